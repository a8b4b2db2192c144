"""Point-in-time-correct training sets straight from the PostgreSQL offline store, with Feast's semantics.

For each entity row and feature view: the latest feature row with the same join keys whose event timestamp is
<= the entity row's timestamp and, when the view has a TTL, >= that timestamp - TTL (inclusive, whole seconds, as
Feast's PostgreSQL offline store does); ties on the event timestamp go to the latest created timestamp, and rows
whose created timestamp is NULL are ignored (Feast drops them too). No match gives NULL (NaN) features.

How: the entity rows (row number, join keys, UTC timestamp) are COPYed into a TEMP table, and each view is joined
with `LEFT JOIN LATERAL (... ORDER BY ts DESC, created DESC LIMIT 1)`, one index probe per entity row. The probe
needs an index on (join keys, timestamp DESC, created DESC): `ensure_pit_index` creates it IF NOT EXISTS, named
`<table>_pit_idx` (the first call on a big table pays for building it). Results stream back with COPY TO as CSV
and are parsed by pyarrow, chunk by chunk, on two connections at once (both server cores work).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from psycopg import sql

# PostgreSQL type (format_type) -> (SQL expression template for the CSV, Arrow type it is read as)
_PG_TYPES: dict[str, tuple[str, pa.DataType]] = {
    "smallint": ("{}", pa.int32()), "integer": ("{}", pa.int32()), "bigint": ("{}", pa.int64()),
    "real": ("{}", pa.float32()), "double precision": ("{}", pa.float64()), "numeric": ("{}::float8", pa.float64()),
    "boolean": ("{}", pa.bool_()), "date": ("{}", pa.date32()),
    "timestamp with time zone": ("(extract(epoch from {}) * 1000000)::int8", pa.timestamp("us", "UTC")),
    "timestamp without time zone": ("(extract(epoch from {}) * 1000000)::int8", pa.timestamp("us")),
}


@dataclass(frozen=True)
class ViewSpec:
    """One feature view as the join needs it: where its rows are and which columns to take."""

    name: str
    table: str
    join_keys: tuple[str, ...]
    timestamp_column: str
    created_column: str | None
    features: tuple[str, ...]
    ttl: timedelta | None = None

    @property
    def ttl_seconds(self) -> int:
        """Feast's TTL: whole seconds (truncated); 0 means unlimited look-back."""
        return int(self.ttl.total_seconds()) if self.ttl else 0


def view_spec_from_feast(fv) -> ViewSpec:  # noqa: ANN001 - feast.FeatureView, imported lazily by callers
    """A ViewSpec from a feast.FeatureView whose batch source is a PostgreSQLSource(table=...) (or a push source's)."""
    source = fv.batch_source
    table = getattr(source, "_postgres_options", None) and source._postgres_options._table
    if not table:
        raise ValueError(f"feature view {fv.name!r}: batch source {source.name!r} is not a PostgreSQLSource(table=)")
    if source.field_mapping:
        raise ValueError(f"feature view {fv.name!r}: field_mapping is not supported")
    keys = tuple(fv.projection.join_key_map.get(c.name, c.name) for c in fv.entity_columns)
    return ViewSpec(name=fv.projection.name_to_use(), table=table, join_keys=keys,
                    timestamp_column=source.timestamp_field, created_column=source.created_timestamp_column or None,
                    features=tuple(f.name for f in fv.features), ttl=fv.ttl)


def _qualified(table: str) -> sql.Composable:
    return sql.SQL(".").join(sql.Identifier(part) for part in table.split("."))


def ensure_pit_index(conn: psycopg.Connection, view: ViewSpec) -> None:
    """CREATE INDEX IF NOT EXISTS <table>_pit_idx ON table (join keys..., timestamp DESC, created DESC)."""
    name = f"{view.table.split('.')[-1]}_pit_idx"[:63]
    cols = [sql.Identifier(k) for k in view.join_keys] + [sql.SQL("{} DESC").format(sql.Identifier(c))
                                                          for c in (view.timestamp_column, view.created_column) if c]
    conn.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} ({})").format(
        sql.Identifier(name), _qualified(view.table), sql.SQL(", ").join(cols)))


def _column_types(conn: psycopg.Connection, table: str) -> dict[str, str]:
    rows = conn.execute("SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                        "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped", (table,)).fetchall()
    if not rows:
        raise ValueError(f"table {table} has no columns or does not exist")
    return dict(rows)


def _entity_csv(frame: pd.DataFrame, keys: Sequence[str], ts: pd.Series, start: int) -> bytes:
    """CSV of (row number, keys..., timestamp) in PostgreSQL's COPY CSV dialect (NULL unquoted, "" quoted)."""
    arrays = [pa.array(np.arange(start, start + len(frame), dtype=np.int64))]
    for key in keys:
        arr = pa.array(frame[key], from_pandas=True)
        arrays.append(arr if pa.types.is_integer(arr.type) or pa.types.is_string(arr.type) else arr.cast(pa.string()))
    arrays.append(pc.cast(pa.array(ts, from_pandas=True), pa.timestamp("us", "UTC"), safe=False))
    buf = io.BytesIO()
    pacsv.write_csv(pa.Table.from_arrays(arrays, names=[f"c{i}" for i in range(len(arrays))]), buf,
                    pacsv.WriteOptions(include_header=False))
    return buf.getvalue()


def _lateral(i: int, view: ViewSpec, types: dict[str, str]) -> tuple[sql.Composable, list[sql.Composable]]:
    """The LATERAL subquery for one view and the outer expressions that read its features."""
    f = sql.Identifier(f"f{i}")
    ts = sql.Identifier(view.timestamp_column)
    where = [sql.SQL("{}.{} = e.{}").format(f, sql.Identifier(k), sql.Identifier(k)) for k in view.join_keys]
    where.append(sql.SQL("{}.{} <= e._ts").format(f, ts))
    if view.ttl_seconds:
        where.append(sql.SQL("{}.{} >= e._ts - {}::interval").format(f, ts, sql.Literal(f"{view.ttl_seconds} s")))
    order = [sql.SQL("{}.{} DESC").format(f, ts)]
    if view.created_column:
        created = sql.Identifier(view.created_column)
        where.append(sql.SQL("{}.{} IS NOT NULL").format(f, created))
        order.append(sql.SQL("{}.{} DESC").format(f, created))
    feats = sql.SQL(", ").join(sql.SQL("{}.{}").format(f, sql.Identifier(c)) for c in view.features)
    lateral = sql.SQL("LEFT JOIN LATERAL (SELECT {} FROM {} {} WHERE {} ORDER BY {} LIMIT 1) {} ON true").format(
        feats, _qualified(view.table), f, sql.SQL(" AND ").join(where), sql.SQL(", ").join(order), f)
    outs = [sql.SQL(_PG_TYPES.get(types[c], ("{}", None))[0]).format(sql.SQL("{}.{}").format(f, sql.Identifier(c)))
            for c in view.features]
    return lateral, outs


def _utc(values: pd.Series) -> pd.Series:
    """Entity timestamps as tz-aware UTC; naive ones are taken as UTC (Feast's coerce_tz_aware)."""
    if not pd.api.types.is_datetime64_any_dtype(values):
        values = pd.to_datetime(values, utc=True, format="ISO8601")
    return values.dt.tz_localize("UTC") if values.dt.tz is None else values.dt.tz_convert("UTC")


def point_in_time_join(dsn: str, entity_df: pd.DataFrame, views: Sequence[ViewSpec], *,
                       timestamp_column: str = "event_timestamp", full_feature_names: bool = False,
                       chunk_rows: int = 250_000, workers: int = 2) -> pd.DataFrame:
    """entity_df (same order, all its columns) plus each view's features as of each row's timestamp.

    Feature columns are named `feature`, or `view__feature` with full_feature_names. `workers` connections each
    join a share of the chunks of `chunk_rows` entity rows.
    """
    keys = list(dict.fromkeys(k for v in views for k in v.join_keys))
    missing = [c for c in [timestamp_column, *keys] if c not in entity_df.columns]
    if missing:
        raise ValueError(f"entity_df lacks columns {missing}")
    names = [f"{v.name}__{c}" if full_feature_names else c for v in views for c in v.features]
    clash = sorted({n for n in names if names.count(n) > 1 or n in entity_df.columns})
    if clash:
        raise ValueError(f"feature names {clash} collide; pass full_feature_names=True")
    ts = _utc(entity_df[timestamp_column])

    with psycopg.connect(dsn, autocommit=True) as conn:
        types = {v.name: _column_types(conn, v.table) for v in views}
        for v in views:
            ensure_pit_index(conn, v)
    key_types = {k: next(types[v.name][k] for v in views if k in v.join_keys) for k in keys}
    laterals, outs, arrow_types = [], [], []
    for i, v in enumerate(views):
        lateral, exprs = _lateral(i, v, types[v.name])
        laterals.append(lateral)
        outs.extend(exprs)
        arrow_types.extend(_PG_TYPES.get(types[v.name][c], ("", pa.string()))[1] for c in v.features)
    query = sql.SQL("COPY (SELECT e._row{} FROM pit_entities e {}) TO STDOUT (FORMAT csv)").format(
        sql.SQL("").join(sql.SQL(", ") + o for o in outs), sql.SQL(" ").join(laterals))
    create = sql.SQL("CREATE TEMP TABLE IF NOT EXISTS pit_entities (_row int8, {}, _ts timestamptz)").format(
        sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(k), sql.SQL(key_types[k])) for k in keys))
    copy_in = sql.SQL("COPY pit_entities (_row, {}, _ts) FROM STDIN (FORMAT csv)").format(
        sql.SQL(", ").join(sql.Identifier(k) for k in keys))
    col_names = ["_row", *[f"c{i}" for i in range(len(names))]]
    convert = pacsv.ConvertOptions(
        column_types=dict(zip(col_names, [pa.int64(), *arrow_types], strict=True)),
        strings_can_be_null=True, quoted_strings_can_be_null=False, true_values=["t"], false_values=["f"])
    parse = pacsv.ParseOptions(newlines_in_values=any(pa.types.is_string(t) for t in arrow_types))
    read = pacsv.ReadOptions(column_names=col_names, block_size=16 << 20)
    starts = list(range(0, len(entity_df), chunk_rows))

    def run(share: list[int]) -> list[pa.Table]:
        tables = []
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("SET temp_buffers = '256MB'")
            conn.execute("SET jit = off")
            conn.execute(create)
            for start in share:
                stop = min(start + chunk_rows, len(entity_df))
                conn.execute("TRUNCATE pit_entities")
                with conn.cursor().copy(copy_in) as copy:
                    copy.write(_entity_csv(entity_df.iloc[start:stop], keys, ts.iloc[start:stop], start))
                conn.execute("ANALYZE pit_entities")
                out = io.BytesIO()
                with conn.cursor().copy(query) as copy:
                    for data in copy:
                        out.write(data)
                out.seek(0)
                tables.append(pacsv.read_csv(out, read_options=read, parse_options=parse, convert_options=convert))
        return tables

    shares = [starts[i::workers] for i in range(max(1, min(workers, len(starts))))]
    with ThreadPoolExecutor(len(shares)) as pool:
        parts = [t for tables in pool.map(run, shares) for t in tables]
    schema = pa.schema(zip(col_names, [pa.int64(), *arrow_types], strict=True))
    table = pa.concat_tables(parts) if parts else schema.empty_table()
    table = table.take(np.argsort(table.column("_row").to_numpy(), kind="stable"))
    features = table.drop_columns(["_row"]).rename_columns(names).to_pandas()
    features.index = entity_df.index
    return pd.concat([entity_df, features], axis=1)
