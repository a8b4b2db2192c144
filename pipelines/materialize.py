"""`leadscore materialize`: move the latest offline rows into Redis, incrementally, only for consenting leads.

For each online feature view backed by a PostgreSQL table: the entity keys whose rows arrived (by `created_at`)
since the last successful run are found, and for each the latest row by event time (ties: latest created) within
the view's TTL is written through Feast's Redis online store. Lead-keyed rows are written only when the lead has a
granted, unexpired `scoring` consent; the online rows of leads without one are deleted. Each run is recorded in
`offline.materialization_runs`. `--every 15m` repeats it under a lock so two runs never overlap.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from compliance.children import unprotected_minor
from infra.config import Settings
from infra.process import ServiceError

log = logging.getLogger("leadscore.materialize")

BATCH_ROWS = 20_000
FEAST_KINDS = {"String": "string", "Int64": "int", "Int32": "int", "Float64": "float", "Float32": "float",
               "Bool": "bool", "UnixTimestamp": "date"}
_LOCK_KEY = 7_120_352


OVERLAP = timedelta(minutes=5)  # re-read a little: rows committed late by a slow transaction are not missed


@dataclass
class MaterializeResult:
    feature_view: str
    window_start: datetime
    window_end: datetime
    rows_written: int
    rows_skipped_no_consent: int
    seconds: float
    note: str = ""


def _latest_rows_sql(table: str, keys: list[str], ts: str, created: str | None, features: list[str],
                     consent: bool, everything: bool = False) -> str:
    """The latest row per key within the window, of the keys whose rows arrived since `since` (`everything`: of
    every key, the first run of a view). Consent is a semi-join on consent's primary key (lead_id, purpose), which
    every plan can probe by index: a join the planner misjudged on a freshly loaded table once ran for minutes."""
    key_cols = ", ".join(f't."{k}"' for k in keys)
    order = f't."{ts}" DESC' + (f', t."{created}" DESC' if created else "")
    feats = ", ".join(f't."{f}"' for f in features)
    conditions = [f't."{ts}" <= %(end)s', f't."{ts}" > %(oldest)s']
    if consent:
        conditions.append("EXISTS (SELECT 1 FROM compliance.consent c WHERE c.lead_id = t.lead_id AND c.purpose = "
                          "'scoring' AND c.granted AND (c.expires_at IS NULL OR c.expires_at > now()))")
        conditions.append("NOT " + unprotected_minor("t.lead_id"))
    if not everything:
        key_list = ", ".join(f'"{k}"' for k in keys)
        conditions.append(f"({key_cols}) IN (SELECT {key_list} FROM {table} WHERE \"{created or ts}\" > %(since)s)")
    return f"""SELECT DISTINCT ON ({key_cols}) {key_cols}, t."{ts}" AS event_timestamp,
               {f't."{created}"' if created else 'NULL::timestamptz'} AS created_at, {feats}
        FROM {table} t WHERE {" AND ".join(conditions)}
        ORDER BY {key_cols}, {order}"""


class OnlineWriter:
    """Writes (keys..., event_timestamp, created_at, features...) rows into Feast's Redis layout for one view.

    Single-string-key views take the direct path (pipelines/redis_codec.py); an older row never overwrites a newer
    one already online (the stream workers push fresher rows). Other views go through Feast's own writer.
    """

    def __init__(self, store, fv) -> None:  # noqa: ANN001
        from pipelines.redis_codec import EntityKeyCodec, field_key

        self.store, self.fv = store, fv
        keys = [e.name for e in fv.entity_columns]
        self.direct = len(keys) == 1 and fv.entity_columns[0].dtype.to_value_type().name == "STRING" and all(
            str(f.dtype) in FEAST_KINDS for f in fv.features)
        self.n_keys = len(keys)
        if self.direct:
            self.codec = EntityKeyCodec(keys[0], store.project)
            self.ts_field = f"_ts:{fv.name}".encode()
            self.fields = [(field_key(fv.name, f.name), FEAST_KINDS[str(f.dtype)]) for f in fv.features]
            self.client = store._get_provider().online_store._get_client(store.config.online_store)

    def write(self, rows: list[tuple]) -> int:
        """Write a batch; return how many rows were written (older-than-online rows are skipped)."""
        if not self.direct:
            return self._write_with_feast(rows)
        from pipelines.redis_codec import encode_timestamp, encode_value, resp_command, send_pipelined

        keys = [self.codec.key(r[0]) for r in rows]
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.hget(key, self.ts_field)
        online_ts = [_timestamp_seconds(b) for b in pipe.execute()]
        commands = []
        for key, row, current in zip(keys, rows, online_ts, strict=True):
            event_ts = row[1].timestamp()
            if current is not None and current > event_ts:
                continue
            args = [b"HSET", key, self.ts_field, encode_timestamp(event_ts)]
            for (field, kind), value in zip(self.fields, row[3:], strict=True):
                args += (field, encode_value(kind, value))
            commands.append(resp_command(args))
        if commands:
            send_pipelined(self.client, commands, len(commands))
        return len(commands)

    def _write_with_feast(self, rows: list[tuple]) -> int:
        import pyarrow as pa
        from feast.utils import _convert_arrow_to_proto

        names = [e.name for e in self.fv.entity_columns] + ["event_timestamp", "created_at"] + [
            f.name for f in self.fv.features]
        batch = pa.Table.from_pylist([dict(zip(names, r, strict=True)) for r in rows])
        join_keys = {e.name: e.dtype.to_value_type() for e in self.fv.entity_columns}
        data = _convert_arrow_to_proto(batch, self.fv, join_keys)
        self.store._get_provider().online_write_batch(self.store.config, self.fv, data, progress=None)
        return len(rows)


REDIS_WAIT_S = 60.0  # how long a materialization waits for Redis to answer again before it gives up


def _write_retrying(writer: OnlineWriter, rows: list[tuple], wait_s: float = REDIS_WAIT_S) -> int:
    """writer.write(rows), retried with back-off while Redis does not answer (a restart); every write is an HSET of
    the same values, so a retried batch is written once in effect."""
    import redis

    deadline, delay = time.monotonic() + wait_s, 0.5
    while True:
        try:
            return writer.write(rows)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            if time.monotonic() > deadline:
                raise ServiceError(f"Redis did not answer for {wait_s:.0f} s while materializing {writer.fv.name} "
                                   f"({exc}): nothing was recorded as materialized, so the next run writes the whole "
                                   "window again; check it with `leadscore infra status`") from None
            log.warning("Redis did not answer while materializing %s (%s); retrying in %.1f s", writer.fv.name, exc,
                        delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def _timestamp_seconds(raw: bytes | None) -> float | None:
    """Seconds of a serialized google.protobuf.Timestamp (None if absent)."""
    if raw is None:
        return None
    from google.protobuf.timestamp_pb2 import Timestamp

    ts = Timestamp.FromString(raw)
    return ts.seconds + ts.nanos / 1e9


def materialize_view(store, fv, conn, end: datetime) -> MaterializeResult:  # noqa: ANN001
    """Materialize one feature view; see the module docstring."""
    t0 = time.monotonic()
    source = fv.batch_source
    table = getattr(source, "_postgres_options", None) and source._postgres_options._table
    if not table:
        raise RuntimeError(f"feature view {fv.name}: only PostgreSQL tables can be materialized by LeadScore")
    keys = [e.name for e in fv.entity_columns]
    features = [f.name for f in fv.features]
    lead_keyed = keys == ["lead_id"]
    last = conn.execute("SELECT max(window_end) FROM offline.materialization_runs WHERE feature_view = %s AND ok",
                        (fv.name,)).fetchone()[0]
    since = last - OVERLAP if last else datetime(1970, 1, 1, tzinfo=UTC)
    oldest = end - fv.ttl if fv.ttl and fv.ttl > timedelta(0) else datetime(1970, 1, 1, tzinfo=UTC)
    params = {"since": since, "end": end, "oldest": oldest}
    sql = _latest_rows_sql(table, keys, source.timestamp_field, source.created_timestamp_column or None,
                           features, consent=lead_keyed, everything=last is None)
    written = 0
    with conn.transaction(), conn.cursor(name=f"materialize_{fv.name}") as cur:
        cur.itersize = BATCH_ROWS
        cur.execute(sql, params)
        writer = OnlineWriter(store, fv)
        while rows := cur.fetchmany(BATCH_ROWS):
            written += _write_retrying(writer, rows)
    skipped = 0
    if lead_keyed:
        skipped = _forget_without_consent(store, fv, conn, since)
    return MaterializeResult(fv.name, since, end, written, skipped, time.monotonic() - t0)


def _forget_without_consent(store, fv, conn, since: datetime) -> int:  # noqa: ANN001
    """Delete the online rows of leads whose data changed, or whose consent changed, and who lack scoring consent."""
    from pipelines.redis_codec import EntityKeyCodec, field_key

    table = fv.batch_source._postgres_options._table
    rows = conn.execute(f"""SELECT DISTINCT t.lead_id FROM {table} t
        LEFT JOIN compliance.consent c ON c.lead_id = t.lead_id AND c.purpose = 'scoring'
        WHERE (t.created_at > %(since)s OR c.recorded_at > %(since)s)
          AND (NOT coalesce(c.granted AND (c.expires_at IS NULL OR c.expires_at > now()), false)
               OR {unprotected_minor("t.lead_id")})""",
                        {"since": since}).fetchall()
    if not rows:
        return 0
    client = store._get_provider().online_store._get_client(store.config.online_store)
    codec = EntityKeyCodec("lead_id", store.project)
    fields = [field_key(fv.name, f.name) for f in fv.features] + [f"_ts:{fv.name}".encode()]
    with client.pipeline(transaction=False) as pipe:
        for (lead_id,) in rows:
            pipe.hdel(codec.key(lead_id), *fields)
        pipe.execute()
    return len(rows)


def _partial(conn, table: str | None) -> str | None:  # noqa: ANN001
    """Why the ingested dataset behind `table` (offline.<dataset>) is partial, or None."""
    from pipelines.ingest_runs import unfinished

    if not table or not table.startswith("offline."):
        return None
    return unfinished(conn, table.split(".", 1)[1])


APPLICATION = "leadscore-materialize"  # its connection's application_name (pg_stat_activity)
ROLE = "materialize"  # its PostgreSQL login (infra/migrations/0017_materialize_role.sql): reads, and records its runs


def materialize(settings: Settings, views: list[str] | None = None, repo_path: Path | None = None,
                tries: int = 3) -> list[MaterializeResult]:
    """Materialize every online feature view (or `views`), under a lock; record each run. If PostgreSQL goes away
    midway (a restart), the materialization runs again once it answers, up to `tries` times: a view whose window
    was recorded starts from there, the others from their last recorded window (online writes skip older rows)."""
    from pipelines.ingest_runs import connection_lost, wait_for_postgres

    for attempt in range(1, tries + 1):
        try:
            return _materialize(settings, views, repo_path)
        except Exception as exc:
            if not connection_lost(exc):
                raise
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            if attempt == tries or not wait_for_postgres(settings, role=ROLE):
                raise ServiceError(f"PostgreSQL went away during the materialization ({first}): run `leadscore "
                                   "infra up`, then this again (what was recorded is not written twice)") from None
            log.warning("PostgreSQL went away during the materialization (%s); it answers again: materializing "
                        "again (attempt %d of %d)", first, attempt + 1, tries)
    raise AssertionError("unreachable")


def _materialize(settings: Settings, views: list[str] | None, repo_path: Path | None) -> list[MaterializeResult]:
    import psycopg

    from pipelines.feature_store import FEATURE_REPO, feature_store
    from pipelines.ingest_runs import PartialDataset

    store = feature_store(settings, repo_path or FEATURE_REPO, role=ROLE)
    chosen = [fv for fv in store.list_feature_views() if fv.online and (not views or fv.name in views)]
    if views and len(chosen) != len(views):
        known = sorted(fv.name for fv in store.list_feature_views())
        raise ValueError(f"unknown feature view(s) {sorted(set(views) - {fv.name for fv in chosen})}; known: {known}")
    results = []
    with psycopg.connect(f"{settings.pg_dsn(role=ROLE)}?application_name={APPLICATION}", autocommit=True) as conn:
        if not conn.execute("SELECT pg_try_advisory_lock(%s)", (_LOCK_KEY,)).fetchone()[0]:
            raise RuntimeError("another materialization is running; this run was skipped (it holds the lock)")
        try:
            for fv in chosen:
                end = datetime.now(UTC)
                table = getattr(fv.batch_source, "_postgres_options", None) and fv.batch_source._postgres_options._table
                if table and conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0] is None:
                    if views:
                        raise ValueError(f"feature view {fv.name} has no data yet: its table {table} does not exist; "
                                         "ingest its dataset first (leadscore ingest crm FILE --spec ...)")
                    results.append(MaterializeResult(fv.name, end, end, 0, 0, 0.0, f"skipped: no table {table} yet "
                                                     "(its dataset was never ingested)"))
                    continue
                partial = _partial(conn, table)
                if partial:  # a dataset whose newest ingest did not finish is not served (pipelines/ingest_runs.py)
                    if views:
                        raise PartialDataset(f"feature view {fv.name} was not materialized: {partial}")
                    results.append(MaterializeResult(fv.name, end, end, 0, 0, 0.0, f"skipped: {partial}"))
                    continue
                try:
                    result = materialize_view(store, fv, conn, end)
                except Exception as exc:
                    conn.execute("INSERT INTO offline.materialization_runs (feature_view, window_start, window_end, "
                                 "ok, error) VALUES (%s, %s, %s, false, %s)", (fv.name, end, end, str(exc)[:500]))
                    raise
                conn.execute("""INSERT INTO offline.materialization_runs (feature_view, window_start, window_end,
                    rows_written, rows_skipped_no_consent, seconds, ok) VALUES (%s, %s, %s, %s, %s, %s, true)""",
                             (fv.name, result.window_start, end, result.rows_written,
                              result.rows_skipped_no_consent, result.seconds))
                results.append(result)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return results
