"""`leadscore ingest crm FILE --spec SPEC`: stream a CRM export into the offline store, rejects explained.

The file is read in chunks (CSV or Parquet, any size; the CSV dialect from the spec's `csv:` block or detected, see
pipelines/csv_read.py), checked by the spec (pipelines/validate.py), and written (pipelines/ingest_write.py) with
COPY into a staging table, then upserted on (lead_id, event_timestamp): re-ingesting the same file changes nothing.
A dataset's first load is copied straight into its table. One chunk is written while the next is read and checked.
Labels go to `offline.labels`, consent to `compliance.consent`, failing rows to `offline.ingest_rejects` with the
reason, and one summary line per run to `offline.ingest_runs` and `compliance.audit_log`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from infra.config import Settings
from infra.process import ServiceError
from pipelines.csv_read import PARQUET, read_chunks
from pipelines.file_checks import label_matches, open_checked
from pipelines.generated_ids import RowIds
from pipelines.ingest_write import Direct, SeenKeys, write_chunk
from pipelines.spec import SQL_TYPES, DatasetSpec, SpecError
from pipelines.validate import check_chunk

log = logging.getLogger("leadscore.ingest")
ROLE = "ingest"  # its PostgreSQL login (infra/migrations/0023_ingest_role.sql): makes and writes datasets, no DELETE
__all__ = ["IngestResult", "ensure_table", "ingest_crm", "read_chunks", "write_chunk"]
# the PostgreSQL types a stored feature of each LeadScore type may have (hand-written tables use narrower ones)
SQL_FAMILIES = {"string": {"text", "character varying", "character"}, "int": {"bigint", "integer", "smallint"},
                "float": {"double precision", "real", "numeric"}, "bool": {"boolean"},
                "date": {"timestamp with time zone", "timestamp without time zone", "date"}}


@dataclass
class IngestResult:
    dataset: str
    file_sha256: str
    rows_read: int = 0
    rows_loaded: int = 0
    rows_rejected: int = 0
    rows_erased: int = 0  # rows of erased leads dated before their erasure: not loaded (compliance/guard.py)
    reasons: Counter = field(default_factory=Counter)
    unused_columns: list[str] = field(default_factory=list)
    read_as: str = ""  # the CSV dialect, e.g. "separator ';' (detected), ..., encoding cp1252 (detected: ...)"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _type_changes(have: dict[str, str], spec: DatasetSpec) -> list[str]:
    """'column: stored type -> spec type' for each stored feature whose type the spec changes."""
    return [f"'{name}' from {have[name]} to {SQL_TYPES[kind]} ({kind})" for name, kind in spec.feature_columns
            if name in have and have[name] not in SQL_FAMILIES[kind]]


def ensure_table(conn, spec: DatasetSpec) -> None:  # noqa: ANN001
    """Create the dataset's offline table, or add the spec's new feature columns to it; refuse a changed type."""
    table = spec.table.split(".", 1)[1]
    have = dict(conn.execute("SELECT column_name, data_type FROM information_schema.columns WHERE "
                             "table_schema = 'offline' AND table_name = %s", (table,)).fetchall())
    changed = _type_changes(have, spec)
    more = f" (and {len(changed) - 1} more)" if len(changed) > 1 else ""
    if spec.feature_view:  # a hand-written view's table, made by a migration: check it fits, never alter it
        missing = [name for name, _ in spec.feature_columns if name not in have]
        if not have or missing:
            raise SpecError(f"spec '{spec.name}' loads into {spec.table}, which "
                            + ("does not exist" if not have else f"has no column(s) {missing}")
                            + ": add them in a new migration in infra/migrations/")
        if changed:
            raise SpecError(f"spec '{spec.name}' changes the type of column {changed[0]}{more} of {spec.table}, a "
                            "hand-written view's table: change the spec back, or the table in a new migration")
        return
    if changed:
        raise SpecError(f"spec '{spec.name}' changes the type of column {changed[0]}{more} of {spec.table}: stored "
                        f"rows are not converted in place; replace the dataset with `leadscore dataset drop "
                        f"{spec.name} --yes`, then ingest the file again")
    cols = ",\n".join(f'    "{name}" {SQL_TYPES[kind]}' for name, kind in spec.feature_columns)
    conn.execute(f"""CREATE TABLE IF NOT EXISTS {spec.table} (
    lead_id text NOT NULL,
    event_timestamp timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
{cols},
    PRIMARY KEY (lead_id, event_timestamp))""")
    if not have:  # a new table: row-level security by tenant, as the migrations give the others (0012)
        conn.execute("SELECT compliance.protect_tenant(%s::regclass)", (spec.table,))
    # the point-in-time join's index (pipelines/training_set.py), which the training login cannot make
    pit = f"{spec.table.split('.')[-1]}_pit_idx"[:63]
    conn.execute(f'CREATE INDEX IF NOT EXISTS "{pit}" ON {spec.table} (lead_id, event_timestamp DESC, '
                 "created_at DESC)")
    for name, kind in spec.feature_columns:
        conn.execute(f'ALTER TABLE {spec.table} ADD COLUMN IF NOT EXISTS "{name}" {SQL_TYPES[kind]}')


def ingest_crm(settings: Settings, path: Path, spec: DatasetSpec, chunk_rows: int = 50_000,
               progress: bool = True, tenant: str | None = None, tries: int = 3) -> IngestResult:
    """Load `path` into the offline store by `spec` for `tenant` (default: the spec's, else the default tenant);
    see the module docstring. If PostgreSQL goes away midway (a restart), the run is recorded failed and the file is
    read again from the start once PostgreSQL answers, up to `tries` runs: every write is an upsert, so the rows of
    the chunks committed before are rewritten, not doubled."""
    from pipelines.ingest_runs import connection_lost, disk_full, wait_for_postgres

    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{path} does not exist")
    if tenant is not None and spec.tenant_column:
        raise SpecError(f"--tenant {tenant}: spec '{spec.name}' takes each row's tenant from column "
                        f"'{spec.tenant_column}'; leave --tenant out (or drop `tenant_column` for one tenant per file)")
    if tenant is not None:
        from compliance.tenants import TenantError, check_tenant

        try:
            check_tenant(tenant)
        except TenantError as exc:
            raise SpecError(f"--tenant: {exc}") from None
    sha = file_sha256(path)
    for attempt in range(1, tries + 1):
        result = IngestResult(spec.name, sha)
        try:
            return _ingest_once(settings, path, spec, chunk_rows, progress, tenant, result)
        except Exception as exc:
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            if disk_full(exc):
                raise ServiceError(f"PostgreSQL ran out of disk space after {result.rows_loaded} rows of {path.name} "
                                   f"({first}): the run is marked failed and the dataset partial (not materialized or "
                                   "trained on until a whole ingest); free space where PostgreSQL keeps its data, "
                                   "then run the same ingest again") from None
            if not connection_lost(exc):
                raise
            if attempt == tries or not wait_for_postgres(settings, role=ROLE):
                raise ServiceError(f"PostgreSQL went away during the ingest of {path.name} ({first}) and "
                                   f"{'did not come back' if attempt < tries else f'did again in {tries} runs'}: the "
                                   "run is marked failed where it could be; run `leadscore infra up`, then the same "
                                   "ingest again") from None
            log.warning("PostgreSQL went away after %d rows of %s (%s): reading the file again from the start "
                        "(run %d of at most %d)", result.rows_read, path.name, first, attempt + 1, tries)
            if progress:
                print(f"PostgreSQL went away after {result.rows_read} rows ({first}); it answers again: reading "
                      f"{path.name} again from the start", file=sys.stderr)
    raise AssertionError("unreachable")


def _ingest_once(settings: Settings, path: Path, spec: DatasetSpec, chunk_rows: int, progress: bool,
                 tenant: str | None, result: IngestResult) -> IngestResult:
    """One run over the whole file, recorded in offline.ingest_runs from its start to its end."""
    import psycopg
    from tqdm import tqdm

    from pipelines.ingest_runs import record_failure

    pii_key = settings.secret("pii_hmac", create=True).encode()
    dialect, columns = open_checked(path, spec)  # the header, encoding and label file before anything is written
    result.read_as = "" if path.suffix.lower() in PARQUET else dialect.describe()
    result.unused_columns = sorted(set(columns) - spec.known_columns())
    positives = label_matches(spec, path)
    ids = RowIds(spec, pii_key) if spec.entity.generate else None
    seen = SeenKeys()
    with psycopg.connect(settings.pg_dsn(role=ROLE)) as conn:  # its own login (infra/migrations/0023)
        from compliance.guard import IngestGuard

        ensure_table(conn, spec)
        guard = IngestGuard(settings, conn, spec)
        run_id = conn.execute("INSERT INTO offline.ingest_runs (dataset, file_name, file_sha256) VALUES (%s, %s, %s) "
                              "RETURNING id", (spec.name, path.name, result.file_sha256)).fetchone()[0]
        conn.commit()
        bar = tqdm(total=path.stat().st_size, unit="B", unit_scale=True, desc=f"ingest {spec.name}",
                   disable=not progress)
        try:
            _load_chunks(conn, path, spec, chunk_rows, dialect, pii_key, ids, positives, tenant, seen, guard, result,
                         bar)
            bar.close()
            conn.execute("UPDATE offline.ingest_runs SET finished_at = now(), status = 'done', rows_read = %s, "
                         "rows_loaded = %s, rows_rejected = %s WHERE id = %s",
                         (result.rows_read, result.rows_loaded, result.rows_rejected, run_id))
            conn.execute("INSERT INTO compliance.audit_log (actor, action, detail) VALUES ('ingest', 'ingest_crm', %s)",
                         (json.dumps({"dataset": spec.name, "file": path.name, "sha256": result.file_sha256,
                                      "loaded": result.rows_loaded, "rejected": result.rows_rejected,
                                      "erased_skipped": result.rows_erased,
                                      "read_as": result.read_as}),))
            conn.commit()
            # fresh statistics for what was just loaded: the planner's estimates for the materialization, the
            # training set and consent checks otherwise rest on the tables as they were before (or on none)
            conn.execute(f"ANALYZE {spec.table}")
            conn.execute("ANALYZE compliance.consent")
            conn.commit()
        except BaseException as exc:  # the run's end is recorded however it ends, then the error goes on
            bar.close()
            record_failure(settings, run_id, (result.rows_read, result.rows_loaded, result.rows_rejected), exc)
            raise
    return result


def _load_chunks(conn, path: Path, spec: DatasetSpec, chunk_rows: int, dialect, pii_key: bytes, ids,  # noqa: ANN001
                 positives, tenant: str | None, seen: SeenKeys, guard, result: IngestResult, bar) -> None:  # noqa: ANN001
    """Check and write the file chunk by chunk, one transaction each. Two at a time: while a thread writes one
    chunk (mostly waiting on PostgreSQL, which works on the other core), the next is read and checked."""
    from concurrent.futures import Future, ThreadPoolExecutor

    direct = Direct.at_start(conn, spec)
    conn.commit()

    def write(checked) -> int:  # noqa: ANN001
        with conn.transaction():
            return write_chunk(conn, spec, checked, result.file_sha256, seen, guard, result, direct)

    def settle(job: tuple[Future, int, object, int]) -> None:
        future, rows, checked, consumed = job
        result.rows_loaded += future.result()
        result.rows_read += rows
        result.rows_rejected += len(checked.rejects)
        result.reasons.update(r.split(":")[0] for r in checked.rejects["reason"])
        bar.update(consumed - bar.n)

    read, pending = 0, None
    with ThreadPoolExecutor(1, thread_name_prefix="ingest-write") as writer:
        try:
            for chunk, consumed in read_chunks(path, chunk_rows, dialect):
                chunk.index = pd.RangeIndex(read + 1, read + 1 + len(chunk))
                checked = check_chunk(chunk, spec, read + 1, pii_key, ids=ids, dialect=dialect,
                                      label_values=positives, tenant=tenant)
                read += len(chunk)
                if pending is not None:
                    job, pending = pending, None
                    settle(job)
                pending = (writer.submit(write, checked), len(chunk), checked, consumed)
            if pending is not None:
                job, pending = pending, None
                settle(job)
        finally:
            if pending is not None:  # a failure while the last chunk was being written: count it if it landed
                with contextlib.suppress(Exception):  # the failure already on its way is the one to report
                    settle(pending)
