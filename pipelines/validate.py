"""Typed, vectorised row checks for CRM ingest: every failing row gets a reason that names the column and the fix."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from compliance.tenants import DEFAULT, SEPARATOR, namespace
from compliance.tenants import NAME as TENANT_NAME
from compliance.tokens import hmac_sha256_hex
from pipelines.csv_read import COMMA_NUMBER, Dialect
from pipelines.generated_ids import RowIds
from pipelines.spec import DatasetSpec

BROKER_ID = r"[A-Za-z0-9_.:@-]{1,64}"  # a broker's id in a CRM export (spec `broker_column`)
TRUE_WORDS = {"1", "true", "t", "yes", "y"}
FALSE_WORDS = {"0", "false", "f", "no", "n"}
FUTURE_SLACK = timedelta(days=1)


@cache
def _edge_space() -> str:
    """An RE2 pattern for whitespace at either end of a value, by what Python's str.strip removes (made on first
    use: scanning every code point takes about 50 ms, which no import should pay)."""
    space = "[" + "".join(f"\\x{{{c:x}}}" for c in range(0x110000) if chr(c).isspace()) + "]"
    return f"^{space}|{space}$"


@dataclass
class CheckedChunk:
    """Valid rows ready to store, and rejected rows with their reasons (same index as the input chunk)."""

    features: pd.DataFrame  # lead_id, event_timestamp, feature columns
    labels: pd.Series | None  # 0/1 per valid row
    consent: dict[str, pd.Series]  # purpose -> granted (bool) per valid row
    rejects: pd.DataFrame  # row_number, lead_id, reason, payload (dict)
    brokers: pd.Series | None = None  # the broker each valid row is assigned to (None: not assigned), with a spec's
    # broker_column


def keyed_hash(values: pd.Series, key: bytes) -> pd.Series:
    """HMAC-SHA256 of each value (hex): a stable pseudonym that cannot be reversed without the key."""
    present = values.notna().to_numpy()
    out = np.full(len(values), None, dtype=object)
    out[present] = hmac_sha256_hex(key, (str(v) for v in values[present]))
    return pd.Series(out, index=values.index, dtype=object)


def stripped(col: pd.Series) -> pd.Series:
    """`col.astype(str).str.strip()`, without the strip when no value has whitespace at either end (checked in
    Arrow, by Python's own definition of whitespace): most columns of most exports."""
    text = col.astype(str)
    try:
        if not pc.any(pc.match_substring_regex(pa.array(text.to_numpy(dtype=object), type=pa.string()),
                                               _edge_space())).as_py():
            return text
    except (pa.ArrowException, TypeError):  # anything Arrow cannot take: the plain way
        pass
    return text.str.strip()


def _iso_after(value: object, limit: datetime) -> bool:
    try:
        when = datetime.fromisoformat(str(value).strip())
    except ValueError:
        return False
    return (when if when.tzinfo else when.replace(tzinfo=UTC)) > limit


def _missing(col: pd.Series, null_values: set[str], text: pd.Series | None = None) -> pd.Series:
    """Missing: no value, or one of the spec's null strings once stripped (`text`: col already stripped)."""
    return col.isna() | (stripped(col) if text is None else text).isin(null_values)


def _numbers(text: pd.Series, dialect: Dialect) -> pd.Series:
    """Numbers written with the file's decimal mark and thousands separator."""
    if dialect.thousands:
        text = text.str.replace(dialect.thousands, "", regex=False)
    if dialect.decimal != ".":
        text = text.str.replace(dialect.decimal, ".", regex=False)
    return pd.to_numeric(text, errors="coerce")


def _not_a_number(text: pd.Series, dialect: Dialect) -> pd.Series:
    hint = (" (numbers here use '.' as the decimal mark: set `csv: {decimal: \",\"}` in the spec if the file "
            "writes 1,5)") if dialect.decimal == "." else ""
    return text.map(repr) + " is not a number" + text.map(lambda v: hint if COMMA_NUMBER.match(v) else "")


def _dates(text: pd.Series, fmt: str | None) -> pd.Series:
    """Dates in UTC (naive = UTC): by `fmt` when given, else ISO 8601, then any form pandas can read per value."""
    if fmt:
        return pd.to_datetime(text, format=fmt, utc=True, errors="coerce")
    parsed = pd.to_datetime(text, format="ISO8601", utc=True, errors="coerce")
    left = parsed.isna() & text.notna()
    if left.any():
        parsed[left] = pd.to_datetime(text[left], format="mixed", utc=True, errors="coerce")
    return parsed


def check_chunk(raw: pd.DataFrame, spec: DatasetSpec, first_row: int, pii_key: bytes, *, ids: RowIds | None = None,
                dialect: Dialect | None = None, label_values: frozenset[str] | None = None,
                tenant: str | None = None) -> CheckedChunk:
    """Parse `raw` (all columns as strings) by the spec; `first_row` is the 1-based file row of raw's first line.

    `ids` generates lead ids for a spec with `entity: {generate: ...}` (one RowIds per file; a fresh one is made for a
    single chunk), `dialect` gives the decimal mark and thousands separator of numbers, and `label_values` the
    positive values of a `label: {matches: ...}` spec (file_checks.label_matches). Lead ids are stored as
    `tenant/id` for a tenant other than the default one (compliance/tenants.py); an id holding `/` is rejected.
    """
    n = len(raw)
    dialect = dialect or Dialect()
    reasons = pd.Series([""] * n, index=raw.index, dtype=object)
    open_rows = np.ones(n, dtype=bool)  # rows with no reason yet
    nulls = set(spec.null_values)

    def fail(mask: pd.Series, message: Callable[[pd.Series], pd.Series] | str) -> None:
        """Give the rows of `mask` that have no reason yet `message` (text, or built for those rows only)."""
        hit = np.asarray(mask.fillna(False) if mask.dtype != bool else mask, dtype=bool) & open_rows
        if hit.any():
            where = pd.Series(hit, index=raw.index)
            reasons[where] = message if isinstance(message, str) else message(where)
            open_rows[hit] = False

    if dialect.bad_lines:  # bytes the file's encoding cannot read, replaced by U+FFFD when read: the row is refused
        for col in raw.columns:
            fail(raw[col].str.contains("\ufffd", regex=False, na=False),
                 f"bytes that are not {dialect.encoding} in column '{col}' (read as U+FFFD; if the whole file is in "
                 "another encoding, set it in the spec's `csv: {encoding: ...}`)")
    if spec.entity.generate:  # from the raw values, before PII is hashed
        ids = ids or RowIds(spec, pii_key)
        generated = ids(raw, first_row)
    label_raw = raw[spec.label.column].copy() if spec.label else None
    for p in spec.pii:  # before anything else touches the data: hash or drop
        if p.action == "hash":
            raw[p.column] = keyed_hash(raw[p.column].where(~_missing(raw[p.column], nulls), None), pii_key)
    out = pd.DataFrame(index=raw.index)

    if spec.entity.generate:
        no_id = pd.Series(False, index=raw.index)
        out["lead_id"] = generated
    else:
        ent = raw[spec.entity.column]
        text = stripped(ent)
        no_id = _missing(ent, nulls, text)
        fail(no_id, f"missing lead id (column '{spec.entity.column}')")
        ent = text
        fail(~no_id & ent.str.contains(SEPARATOR, regex=False), lambda m: "lead id " + ent[m].map(repr)
             + f" holds '{SEPARATOR}', which LeadScore reserves for tenants (column '{spec.entity.column}')")
        out["lead_id"] = keyed_hash(ent, pii_key) if spec.entity.hash else ent
    if spec.tenant_column:  # a tenant per row: the default tenant's leads keep their bare id
        named = stripped(raw[spec.tenant_column])
        fail(_missing(raw[spec.tenant_column], nulls, named), f"missing tenant (column '{spec.tenant_column}')")
        fail(~named.str.fullmatch(TENANT_NAME.pattern), lambda m: "tenant " + named[m].map(repr) + " is not a tenant "
             f"name: 1-32 of a-z, 0-9, _ and -, starting with a letter or digit (column '{spec.tenant_column}')")
        bare = out["lead_id"].astype(str)
        out["lead_id"] = bare.where(named == DEFAULT, named + SEPARATOR + bare)
    elif (space := namespace(tenant or spec.tenant)) != DEFAULT:
        out["lead_id"] = space + SEPARATOR + out["lead_id"].astype(str)

    brokers = None
    if spec.broker_column:  # the lead's broker: optional per row, but a value must be an id
        brokers = stripped(raw[spec.broker_column])
        unassigned = _missing(raw[spec.broker_column], nulls, brokers)
        fail(~unassigned & ~brokers.str.fullmatch(BROKER_ID), lambda m: "broker " + brokers[m].map(repr) + " is not a "
             f"broker id: 1-64 of A-Z, a-z, 0-9, _ . : @ - (column '{spec.broker_column}')")
        brokers = brokers.where(~unassigned, None)

    ts_spec = spec.event_timestamp
    if ts_spec.column:
        col = raw[ts_spec.column]
        parsed = pd.to_datetime(col, format=ts_spec.format, utc=True, errors="coerce")
        limit = datetime.now(UTC) + FUTURE_SLACK
        # pandas cannot hold dates after 2262: a typo like 2999 comes back unparsed, but it is a future date
        unparsed = parsed.isna()
        late = np.zeros(n, dtype=bool)
        late[unparsed.to_numpy()] = [_iso_after(v, limit) for v in col[unparsed]]
        beyond = pd.Series(late, index=raw.index)
        fail(beyond | (parsed > limit), lambda m: "event time " + col[m].astype(str).map(repr)
             + f" is in the future (column '{ts_spec.column}')")
        fail(unparsed, lambda m: "event time " + col[m].astype(str).map(repr) + f" is not a date (column "
             f"'{ts_spec.column}'" + (f", expected format {ts_spec.format}" if ts_spec.format else "") + ")")
        out["event_timestamp"] = parsed
    else:
        out["event_timestamp"] = pd.Timestamp(ts_spec.default)

    labels = None
    if spec.label and spec.label.matches:
        if label_values is None:
            raise ValueError(f"spec {spec.name!r} takes its label from {spec.label.matches.file}: pass label_values")
        col = stripped(label_raw)
        fail(_missing(label_raw, nulls, col), f"label column '{spec.label.column}' is missing (it is matched against "
             f"{spec.label.matches.file})")
        labels = col.isin(label_values).astype("int8")
    elif spec.label:
        col = stripped(label_raw)
        pos = col.isin({str(v) for v in spec.label.positive})
        neg = col.isin({str(v) for v in spec.label.negative})
        fail(~(pos | neg), lambda m: "label " + col[m].map(repr) + f" (column '{spec.label.column}') is neither a "
             f"positive {spec.label.positive} nor a negative {spec.label.negative} value")
        labels = pos.astype("int8")

    for f in spec.features:
        col = raw[f.column]
        text = stripped(col)
        missing = _missing(col, nulls, text)
        where = f"feature '{f.name}' (column '{f.column}')"
        if f.required:
            fail(missing, f"{where} is required but missing")
        if f.type in ("int", "float"):
            num = _numbers(text.where(~missing), dialect)
            fail(~missing & num.isna(), lambda m, text=text, where=where: f"{where}: "
                 + _not_a_number(text[m], dialect))
            if f.type == "int":
                fail(~missing & num.notna() & (num % 1 != 0),
                     lambda m, text=text, where=where: f"{where}: " + text[m].map(repr) + " is not a whole number")
            if f.min is not None:
                fail(num < f.min, lambda m, text=text, where=where, f=f: f"{where} = " + text[m]
                     + f" is below the minimum {f.min:g}")
            if f.max is not None:
                fail(num > f.max, lambda m, text=text, where=where, f=f: f"{where} = " + text[m]
                     + f" is above the maximum {f.max:g}")
            out[f.name] = num.astype("Int64") if f.type == "int" else num.astype("float64")
        elif f.type == "date":
            parsed = _dates(text.where(~missing), f.format)
            fail(~missing & parsed.isna(), lambda m, text=text, where=where, f=f: f"{where}: " + text[m].map(repr)
                 + " is not a date" + (f" (expected format {f.format})" if f.format else ""))
            out[f.name] = parsed
        elif f.type == "bool":
            low = text.str.lower()
            truth = low.isin(TRUE_WORDS)
            fail(~missing & ~truth & ~low.isin(FALSE_WORDS),
                 lambda m, text=text, where=where: f"{where}: " + text[m].map(repr) + " is not yes/no")
            out[f.name] = truth.astype("boolean").where(~missing, pd.NA)
        else:
            if f.allowed is not None:
                fail(~missing & ~text.isin(f.allowed), lambda m, text=text, where=where, f=f: f"{where}: "
                     + text[m].map(repr) + f" is not one of {f.allowed}")
            out[f.name] = text.where(~missing, None)
    for p in spec.pii:
        if p.action == "hash" and p.as_feature:
            out[p.as_feature] = raw[p.column]

    consent = {}
    for purpose, c in spec.consent.items():
        if c.column:
            consent[purpose] = stripped(raw[c.column]).isin({str(v) for v in c.granted_values})
        else:
            consent[purpose] = pd.Series(bool(c.default), index=raw.index)

    bad = pd.Series(~open_rows, index=raw.index)
    dropped = [p.column for p in spec.pii if p.action == "drop"]
    payload = raw.loc[bad].drop(columns=dropped, errors="ignore")
    rejects = pd.DataFrame({
        "row_number": np.arange(first_row, first_row + n)[bad.to_numpy()],
        "lead_id": out.loc[bad, "lead_id"].where(~no_id[bad], None),
        "reason": reasons[bad],
        "payload": payload.to_dict(orient="records"),
    })
    good = ~bad
    return CheckedChunk(
        features=out.loc[good],
        labels=None if labels is None else labels[good],
        consent={k: v[good] for k, v in consent.items()},
        rejects=rejects,
        brokers=None if brokers is None else brokers[good],
    )
