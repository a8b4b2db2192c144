"""Train / test split, chosen by the data scientist (`--split`) or by the data: by time, at random, or by a marker.

- `random`: stratified by label, leads ordered by a hash of their id (no random state: retraining on the same labels
  holds out the same leads, which is what lets `leadscore promote` compare two versions on data neither was fitted on).
- `time`: the newest `test` share is the test set, or, with a cut-off date, every row at or after it.
- `column:NAME`: a marker column given with the data (a competition's official split): rows whose value is one of
  the test values are the test set, rows with a train value (or, without train values, every other row) train.
  The marker is not a feature.
- `auto` (the default): `time` when the rows' times differ, else `random`.

There is no validation slice: members are cross-fitted on the training rows (models/crossfit.py), and early stopping
uses a slice of each fold's own training part.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

MIN_ROWS = 50


@dataclass
class Split:
    train: pd.DataFrame
    test: pd.DataFrame
    method: str  # "time", "random", "column:NAME" (or "cv" from a benchmark)
    detail: str = ""  # the cut-off, the marker values: said in the run
    marker: str | None = None  # the marker column, never a feature

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "test": len(self.test)}


@dataclass(frozen=True)
class SplitSpec:
    """What `--split`, `--cutoff`, `--train-values` and `--test-values` asked for."""

    method: str = "auto"
    test: float = 0.2
    cutoff: pd.Timestamp | None = None
    column: str | None = None
    train_values: tuple[str, ...] = ()
    test_values: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def parse(cls, text: str = "auto", test: float = 0.2, cutoff: str | None = None, train_values: str = "",
              test_values: str = "") -> SplitSpec:
        """From the command line; a bad value raises ValueError naming the option and what is allowed."""
        text = (text or "auto").strip()
        column = None
        if text.startswith("column:"):
            column = text.split(":", 1)[1].strip()
            if not column:
                raise ValueError("--split column: needs the marker's name, e.g. --split column:is_test")
            method = "column"
        elif text in ("auto", "random", "time"):
            method = text
        else:
            raise ValueError(f"--split {text!r}: use auto, random, time or column:NAME")
        if not 0 < test < 1:
            raise ValueError(f"--test-share {test}: a share between 0 and 1")
        when = None
        if cutoff:
            if method not in ("time", "auto"):
                raise ValueError("--cutoff goes with --split time")
            try:
                when = pd.Timestamp(cutoff)
            except ValueError:
                raise ValueError(f"--cutoff {cutoff!r} is not a date (use YYYY-MM-DD or ISO 8601)") from None
            when = when.tz_localize("UTC") if when.tzinfo is None else when.tz_convert("UTC")
            method = "time"
        tests = tuple(v.strip() for v in test_values.split(",") if v.strip())
        trains = tuple(v.strip() for v in train_values.split(",") if v.strip())
        if method == "column" and not tests:
            raise ValueError(f"--split column:{column} needs --test-values (the marker's values of test rows)")
        if method != "column" and (tests or trains):
            raise ValueError("--train-values and --test-values go with --split column:NAME")
        return cls(method, test, when, column, trains, tests)


def _hash_rank(ids: pd.Series) -> np.ndarray:
    return np.array([int.from_bytes(hashlib.blake2b(str(v).encode(), digest_size=8).digest(), "big") for v in ids],
                    dtype=np.uint64)


def stratified_order(frame: pd.DataFrame, label: str = "label") -> list[np.ndarray]:
    """Per class (sorted by label), the frame's index ordered by a hash of the lead id: deterministic shuffles."""
    return [group.index[np.argsort(_hash_rank(group["lead_id"]), kind="stable")].to_numpy()
            for _, group in frame.groupby(label, sort=True)]


def _check(frame: pd.DataFrame, label: str) -> None:
    if len(frame) < MIN_ROWS:
        raise ValueError(f"only {len(frame)} labelled rows: too few to train and test a model (need at least "
                         f"{MIN_ROWS})")
    if frame[label].nunique() < 2:
        raise ValueError(f"every row has label {frame[label].iloc[0]}: training needs both converted and not "
                         "converted leads")


def _check_part(name: str, part: pd.DataFrame, label: str, how: str) -> None:
    if len(part) == 0 or part[label].nunique() < 2:
        raise ValueError(f"the {name} set of {how} has {len(part)} rows and "
                         f"{'no' if len(part) == 0 else 'one'} class: choose another split")


def split_frame(frame: pd.DataFrame, spec: SplitSpec | None = None, label: str = "label",
                time_column: str = "event_timestamp") -> Split:
    """Split labelled rows into train and test by `spec` (see the module docstring)."""
    spec = spec or SplitSpec()
    frame = frame.reset_index(drop=True)
    _check(frame, label)
    n = len(frame)
    if spec.method == "column":
        if spec.column not in frame:
            raise ValueError(f"--split column:{spec.column}: the training set has no column {spec.column!r}; "
                             f"it has {[c for c in frame.columns if c not in ('lead_id', label)]}")
        values = frame[spec.column].astype(object).where(frame[spec.column].notna(), None).map(
            lambda v: None if v is None else str(v))
        is_test = values.isin(spec.test_values)
        is_train = values.isin(spec.train_values) if spec.train_values else ~is_test
        how = f"--split column:{spec.column}"
        train, test = frame.loc[is_train & ~is_test], frame.loc[is_test]
        _check_part("train", train, label, how)
        _check_part("test", test, label, how)
        seen = sorted(values.dropna().unique().tolist())[:10]
        detail = (f"test where {spec.column} in {list(spec.test_values)}, train where "
                  + (f"in {list(spec.train_values)}" if spec.train_values else "not") + f" (values seen: {seen}; "
                  f"{int((~is_train & ~is_test).sum())} rows in neither)")
        return Split(train, test, f"column:{spec.column}", detail, spec.column)
    times = pd.to_datetime(frame[time_column], utc=True) if time_column in frame else None
    varied = times is not None and times.nunique() > 1 and times.value_counts().iloc[0] < (1 - spec.test) * n
    if spec.method == "time" or (spec.method == "auto" and varied):
        if times is None or times.nunique() < 2:
            raise ValueError("--split time: every row has the same event time; use --split random")
        if spec.cutoff is not None:
            is_test = times >= spec.cutoff
            train, test = frame.loc[~is_test], frame.loc[is_test]
            how = f"--cutoff {spec.cutoff.date()}"
            _check_part("train", train, label, how)
            _check_part("test", test, label, how)
            return Split(train, test, "time", f"test from {spec.cutoff.isoformat()}")
        order = np.lexsort((frame["lead_id"].astype(str).to_numpy(), times.to_numpy()))
        n_test = int(round(n * spec.test))
        idx = frame.index[order]
        train, test = frame.loc[idx[: n - n_test]], frame.loc[idx[n - n_test:]]
        _check_part("test", test, label, "--split time")
        return Split(train, test, "time", f"newest {spec.test:.0%} ({test[time_column].min()} on)")
    test_idx = []
    for ranked in stratified_order(frame, label):
        test_idx.extend(ranked[: int(round(len(ranked) * spec.test))])
    is_test = frame.index.isin(test_idx)
    return Split(frame.loc[~is_test], frame.loc[is_test], "random", f"stratified {spec.test:.0%}, by id hash")
