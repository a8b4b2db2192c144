"""Feature preprocessing shared by training and serving: fixed categories, numeric coercion, MLP arrays.

Serving imports this module (through models/ensemble.py), so it depends on numpy and pandas only. Everything
learned from the training data (categories, medians, scales) lives in a `FeatureSchema` saved as JSON beside the
members, so a lead is encoded at serving time exactly as it was at fit time; an unseen category becomes missing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from itertools import chain, repeat
from operator import itemgetter
from pathlib import Path

import numpy as np
import pandas as pd

MAX_CATEGORIES = 255  # most frequent levels kept per categorical; the rest are treated as missing
ID_LIKE_RATIO = 0.5  # a string feature with more distinct values than this share of rows is an identifier


def _is_text(col: pd.Series) -> bool:
    """Categorical by dtype (category, string) or an object column holding text (booleans are numeric)."""
    if isinstance(col.dtype, pd.CategoricalDtype | pd.StringDtype):
        return True
    if col.dtype != object:
        return False
    return bool(col.dropna().map(lambda v: isinstance(v, str)).any())


def infer_categorical(frame: pd.DataFrame, features: list[str]) -> list[str]:
    """Features that are categorical: text or category columns (booleans and numbers are numeric)."""
    return [name for name in features if _is_text(frame[name])]


def numeric(col: pd.Series) -> np.ndarray:
    """A column as float64: booleans -> 0/1, None/NA -> NaN, text that is not a number -> NaN."""
    if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
        return pd.to_numeric(col, errors="coerce").astype("float64").to_numpy()
    mapped = col.map(lambda v: float(v) if isinstance(v, bool | np.bool_) else v)
    return pd.to_numeric(mapped, errors="coerce").astype("float64").to_numpy()


def _seconds(value: object) -> float:
    """Unix seconds of one date value: a datetime (naive = UTC), ISO 8601 text or a number of Unix seconds."""
    if value is None or value is pd.NaT or isinstance(value, bool | np.bool_):
        return np.nan
    if isinstance(value, str):
        try:
            value = pd.Timestamp(value)
        except ValueError:
            return np.nan
    if isinstance(value, datetime | np.datetime64):
        stamp = pd.Timestamp(value)
        if stamp is pd.NaT:
            return np.nan
        return (stamp.tz_localize(UTC) if stamp.tzinfo is None else stamp).timestamp()
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return np.nan


def reference_seconds(df: pd.DataFrame) -> np.ndarray | float:
    """The time a date feature is measured back from: each row's `event_timestamp` when the frame has one (training
    rows, point in time), else now (a lead being scored)."""
    if "event_timestamp" in df.columns:
        return date_seconds(df["event_timestamp"])
    return time.time()


def date_seconds(col: pd.Series | Sequence) -> np.ndarray:
    """A date column as Unix seconds (NaN where missing or not a date)."""
    if isinstance(col, pd.Series) and pd.api.types.is_datetime64_any_dtype(col):
        stamps = col.dt.tz_localize(UTC) if col.dt.tz is None else col
        return (stamps - pd.Timestamp(0, tz=UTC)).dt.total_seconds().to_numpy("float64")
    return np.fromiter(map(_seconds, col), "float64", len(col))


def date_days(col: pd.Series | Sequence, reference: np.ndarray | float) -> np.ndarray:
    """A date feature as the model reads it: days before the reference time (negative when after it)."""
    return (np.asarray(reference, "float64") - date_seconds(col)) / 86400.0


def _as_text(col: pd.Series) -> pd.Series:
    """Category values as strings (an integer code 7 and '7' are the same level); missing stays missing."""
    return col.astype(object).where(col.notna(), None).map(lambda v: None if v is None else str(v))


@dataclass
class FeatureSchema:
    """What the models read and how: feature order, categories per categorical, numeric medians and scales."""

    features: list[str]
    categorical: list[str]
    categories: dict[str, list[str]] = field(default_factory=dict)
    medians: dict[str, float] = field(default_factory=dict)
    means: dict[str, float] = field(default_factory=dict)
    stds: dict[str, float] = field(default_factory=dict)
    dropped: dict[str, str] = field(default_factory=dict)  # feature -> why it is not used
    dates: list[str] = field(default_factory=list)  # numeric features given as dates: read as days before the
    # row's event time (training) or the scoring time (serving)

    @property
    def numeric(self) -> list[str]:
        return [f for f in self.features if f not in self.categorical]

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: Path) -> FeatureSchema:
        return cls(**json.loads(Path(path).read_text()))


def fit_schema(frame: pd.DataFrame, features: list[str], categorical: list[str] | None = None) -> FeatureSchema:
    """Learn categories (most frequent first, capped), medians and scales from the training rows."""
    categorical = infer_categorical(frame, features) if categorical is None else list(categorical)
    dropped: dict[str, str] = {}
    cats: dict[str, list[str]] = {}
    for name in categorical:
        counts = _as_text(frame[name]).value_counts()
        if len(counts) > max(100, ID_LIKE_RATIO * len(frame)):
            dropped[name] = f"{len(counts)} distinct values in {len(frame)} rows: an identifier, not a feature"
            continue
        cats[name] = [str(v) for v in counts.index[:MAX_CATEGORIES]]
    used = [f for f in features if f not in dropped]
    schema = FeatureSchema(features=used, categorical=[c for c in categorical if c in cats], categories=cats,
                           dropped=dropped)
    schema.dates = [f for f in schema.numeric if pd.api.types.is_datetime64_any_dtype(frame[f])]
    for name in schema.numeric:
        values = column_values(frame, name, schema)
        finite = values[np.isfinite(values)]
        median = float(np.median(finite)) if len(finite) else 0.0
        filled = np.where(np.isfinite(values), values, median)
        schema.medians[name] = median
        schema.means[name] = float(filled.mean()) if len(filled) else 0.0
        std = float(filled.std()) if len(filled) else 1.0
        schema.stds[name] = std if std > 1e-12 else 1.0
    return schema


def column_values(df: pd.DataFrame, name: str, schema: FeatureSchema) -> np.ndarray:
    """A numeric feature as float64; a date feature as days before the reference time."""
    if name in schema.dates:
        return date_days(df[name], reference_seconds(df))
    return numeric(df[name])


def check_columns(df: pd.DataFrame, schema: FeatureSchema) -> None:
    missing = [f for f in schema.features if f not in df.columns]
    if missing:
        raise ValueError(f"input lacks feature column(s) {missing}; the model reads {schema.features}")


def tree_frame(df: pd.DataFrame, schema: FeatureSchema) -> pd.DataFrame:
    """Columns in schema order: numerics as float64, categoricals as pandas categories fixed at fit time."""
    check_columns(df, schema)
    out = {}
    for name in schema.features:
        if name in schema.categories:
            out[name] = pd.Categorical(_as_text(df[name]), categories=schema.categories[name])
        else:
            out[name] = column_values(df, name, schema)
    return pd.DataFrame(out, index=df.index)


def mlp_arrays(df: pd.DataFrame, schema: FeatureSchema) -> tuple[np.ndarray, np.ndarray]:
    """(numerics standardised after median imputation, plus one missing indicator each; category codes).

    Category code 0 means missing or unseen; level i of the schema is code i + 1.
    """
    check_columns(df, schema)
    nums, flags = [], []
    for name in schema.numeric:
        values = column_values(df, name, schema)
        missing = ~np.isfinite(values)
        values = np.where(missing, schema.medians[name], values)
        nums.append((values - schema.means[name]) / schema.stds[name])
        flags.append(missing.astype("float64"))
    x_num = np.column_stack(nums + flags).astype("float32") if nums else np.zeros((len(df), 0), "float32")
    codes = []
    for name in schema.categorical:
        cat = pd.Categorical(_as_text(df[name]), categories=schema.categories[name])
        codes.append(cat.codes.astype("int64") + 1)
    x_cat = np.column_stack(codes) if codes else np.zeros((len(df), 0), "int64")
    return x_num, x_cat


def cardinalities(schema: FeatureSchema) -> list[int]:
    """Embedding table sizes: one per categorical, levels + 1 (code 0 = missing/unseen)."""
    return [len(schema.categories[c]) + 1 for c in schema.categorical]


# --- the fast path: arrays encoded without building pandas frames (serving; same values as the functions above) ---
_PLAIN_NUMBERS = frozenset({float, int, bool, type(None), np.float64, np.float32, np.int64, np.int32, np.bool_})
_PLAIN_VALUES = frozenset({str, float, int, bool, type(None)})  # what a JSON request carries
_TEXT_OR_NONE = frozenset({str, type(None)})


def _small_ints(values: np.ndarray) -> bool:
    """Python ints all within +-2**53, where float(v) is exact (larger ones take the reference path)."""
    return all(abs(v) <= 2**53 for v in values if type(v) is int)


class Encoder:
    """The schema turned once into lookups and arrays, to encode leads as numpy arrays with no per-call pandas work.

    `encode(df)` gives exactly what `tree_frame` and `mlp_arrays` give (tested): the tree matrix holds the numerics as
    float64 and each categorical as its category code (NaN where missing or unseen), which is what the boosters see
    when fed those frames; the MLP arrays are built from the same values. Columns of a kind the fast path does not
    cover (text in a numeric feature, extension dtypes) go through the reference functions, one column at a time.
    """

    def __init__(self, schema: FeatureSchema) -> None:
        self.schema = schema
        self.features = list(schema.features)
        self.getter = itemgetter(*self.features) if len(self.features) > 1 else lambda r: (r[self.features[0]],)
        self.lookup = {name: {level: i for i, level in enumerate(schema.categories[name])}
                       for name in schema.categorical}
        self.code_column = {name: k for k, name in enumerate(schema.categorical)}  # x_cat's column order
        numeric_names = schema.numeric
        self.num_positions = [self.features.index(f) for f in numeric_names]
        self.medians = np.array([schema.medians[f] for f in numeric_names], "float64")
        self.means = np.array([schema.means[f] for f in numeric_names], "float64")
        self.stds = np.array([schema.stds[f] for f in numeric_names], "float64")
        self.dates = set(schema.dates)

    def encode(self, df: pd.DataFrame) -> Encoded:
        check_columns(df, self.schema)
        n = len(df)
        trees = np.empty((n, len(self.features)), "float64")
        codes = np.empty((n, len(self.code_column)), "int64")
        reference = reference_seconds(df) if self.dates else None  # once for every date column
        for j, name in enumerate(self.features):
            col = df[name]
            if name in self.lookup:
                c = self.codes(col, name)
                codes[:, self.code_column[name]] = c
                trees[:, j] = np.where(c < 0, np.nan, c)
            elif name in self.dates:
                trees[:, j] = date_days(col, reference)
            else:
                trees[:, j] = self.numeric(col)
        return Encoded(self, trees, codes)

    @staticmethod
    def numeric(col: pd.Series) -> np.ndarray:
        """`numeric(col)` without its pandas round trips for plain numpy columns and objects holding numbers."""
        dtype = col.dtype
        if isinstance(dtype, np.dtype):
            if dtype.kind in "fiub":
                return col.to_numpy(dtype="float64")
            if dtype.kind == "O":
                values = col.to_numpy()
                kinds = set(map(type, values))
                if kinds <= _PLAIN_NUMBERS and (int not in kinds or _small_ints(values)):
                    return values.astype("float64")  # float(v) each; None -> NaN; bools -> 0/1
        return numeric(col)

    def encode_records(self, rows: Sequence[Mapping]) -> tuple[Encoded, list[list], np.ndarray]:
        """`encode` for a list of {feature: value} dicts (a missing key is a missing value), with no pandas frame.

        Also returns the values as rows in feature order (what explanations show) and the count of missing values
        (None or NaN) per row. Columns of plain numbers convert in one block; other columns take `encode`'s per-column
        rules."""
        n, names = len(rows), self.features
        try:
            grid = list(map(self.getter, rows))  # rows holding every feature (the online store's): C-level
        except KeyError:
            grid = [[r.get(f) for f in names] for r in rows]
        columns = list(zip(*grid, strict=True)) if n else [()] * len(names)
        trees = np.empty((n, len(names)), "float64")
        codes = np.empty((n, len(self.code_column)), "int64")
        missing = np.zeros(n, "int64")
        numeric_at = [j for j, name in enumerate(names) if name not in self.lookup and name not in self.dates]
        kinds = set(map(type, chain.from_iterable(columns[j] for j in numeric_at)))
        if kinds <= _PLAIN_NUMBERS and (int not in kinds or all(_small_ints(columns[j]) for j in numeric_at)):
            if numeric_at and n:
                block = np.array([columns[j] for j in numeric_at], dtype="float64").T  # None -> NaN; bools -> 0/1
                trees[:, numeric_at] = block
                missing += np.isnan(block).sum(axis=1)
            numeric_at = []
        for j in numeric_at:  # a column holding text or other kinds: the reference conversion
            values = np.empty(n, dtype=object)
            values[:] = columns[j]
            trees[:, j] = numeric(pd.Series(values, dtype=object))
            missing += pd.isna(values)
        now = time.time() if self.dates else None
        for j, name in enumerate(names):
            if name in self.dates:  # a record is a lead being scored now
                trees[:, j] = date_days(columns[j], now)
                missing += np.isnan(trees[:, j])
            elif name in self.lookup:
                c, absent = self._codes(columns[j], name)
                codes[:, self.code_column[name]] = c
                trees[:, j] = np.where(c < 0, np.nan, c)
                missing += absent
        return Encoded(self, trees, codes), grid, missing

    def _codes(self, values: Sequence, name: str) -> tuple[np.ndarray, np.ndarray]:
        """`codes` for a column of plain values, and which of them are missing."""
        if not {type(v) for v in values} <= _PLAIN_VALUES:
            column = np.empty(len(values), dtype=object)
            column[:] = values
            return self.codes(column, name), pd.isna(column)
        lookup = self.lookup[name]
        if {type(v) for v in values} <= _TEXT_OR_NONE:  # the usual column: labels and gaps
            return (np.fromiter(map(lookup.get, values, repeat(-1)), "int64", len(values)),
                    np.fromiter((v is None for v in values), bool, len(values)))
        absent = [v is None or (type(v) is float and v != v) for v in values]
        out = [-1 if a else lookup.get(v if type(v) is str else str(v), -1)
               for v, a in zip(values, absent, strict=True)]
        return np.asarray(out, "int64").reshape(len(values)), np.asarray(absent, bool).reshape(len(values))

    def codes(self, col: pd.Series | np.ndarray, name: str) -> np.ndarray:
        """Category codes (-1 missing or unseen) as `pd.Categorical(_as_text(col), categories=...)` gives them."""
        lookup = self.lookup[name]
        values = col if isinstance(col, np.ndarray) and col.dtype == object else np.asarray(col, dtype=object)
        out = np.fromiter((lookup.get(v if type(v) is str else str(v), -1) for v in values), "int64", len(values))
        out[pd.isna(values)] = -1
        return out


class Encoded:
    """One batch encoded once: the boosters' matrix, the categorical codes, and the MLP arrays on demand."""

    def __init__(self, encoder: Encoder, trees: np.ndarray, codes: np.ndarray) -> None:
        self.encoder, self.trees, self.codes = encoder, trees, codes

    def rows(self, index: slice) -> Encoded:
        """The same encoding for a slice of the rows."""
        return Encoded(self.encoder, self.trees[index], self.codes[index])

    def mlp(self) -> tuple[np.ndarray, np.ndarray]:
        """What `mlp_arrays` returns: standardised numerics after median imputation, missing flags; codes + 1."""
        e = self.encoder
        values = self.trees[:, e.num_positions]
        missing = ~np.isfinite(values)
        values = np.where(missing, e.medians, values)
        x_num = np.concatenate([(values - e.means) / e.stds, missing.astype("float64")], axis=1).astype("float32")
        return x_num, self.codes + 1
