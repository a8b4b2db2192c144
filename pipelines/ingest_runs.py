"""The life of an ingest run in `offline.ingest_runs`: its end recorded however it ends, a PostgreSQL that went away
told from a refusal, and a dataset whose newest run did not finish kept from being served."""

from __future__ import annotations

import logging
import time

from infra.config import Settings
from infra.process import ServiceError

log = logging.getLogger("leadscore.ingest")
RECORD_WAIT_S = 60.0  # how long a failed run's end waits for PostgreSQL to answer again before it gives up


class PartialDataset(ServiceError):
    """The dataset's newest ingest did not finish: some of its chunks are in the offline store, others not."""


def connection_lost(exc: BaseException) -> bool:
    """True for PostgreSQL going away (restart, crash, network), which a new attempt can outlive; False for a
    refusal of what was sent or of the server's own state (a constraint, a full disk)."""
    import psycopg

    exc = getattr(exc, "orig", None) or exc  # SQLAlchemy (Feast's registry, MLflow) wraps the driver's error
    if not isinstance(exc, psycopg.OperationalError):
        return False
    state = getattr(exc, "sqlstate", None)
    return state is None or state.startswith(("08", "57P"))


def disk_full(exc: BaseException) -> bool:
    import psycopg

    return isinstance(exc, psycopg.errors.DiskFull) or "No space left on device" in str(exc)


def wait_for_postgres(settings: Settings, timeout: float = RECORD_WAIT_S, role: str | None = None) -> bool:
    """Poll until PostgreSQL takes a connection (as `role`'s login, infra.config.PG_ROLES) again; False after
    `timeout` seconds."""
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(settings.pg_dsn(role=role), connect_timeout=5):
                return True
        except psycopg.OperationalError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(1.0)


def record_failure(settings: Settings, run_id: int, counts: tuple[int, int, int], exc: BaseException) -> None:
    """Mark the run failed with its reason, on a connection of its own (the run's may be what failed); if
    PostgreSQL went away, wait up to RECORD_WAIT_S for it first."""
    import psycopg

    reason = (f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}")[:500]
    if connection_lost(exc):
        wait_for_postgres(settings)
    try:
        with psycopg.connect(settings.pg_dsn(role="ingest"), connect_timeout=5) as conn:
            conn.execute("UPDATE offline.ingest_runs SET finished_at = now(), status = 'failed', reason = %s, "
                         "rows_read = %s, rows_loaded = %s, rows_rejected = %s WHERE id = %s",
                         (reason, *counts, run_id))
    except psycopg.Error as err:  # PostgreSQL itself is gone: say so beside the error that ended the run
        log.warning("ingest run %s failed (%s) and its end could not be recorded: %s", run_id, reason, err)


def unfinished(conn, dataset: str) -> str | None:  # noqa: ANN001 - psycopg connection
    """Why `dataset`'s rows are not whole (its newest ingest run did not finish), or None."""
    row = conn.execute("SELECT id, status, reason, started_at, rows_loaded, file_name FROM offline.ingest_runs "
                       "WHERE dataset = %s ORDER BY id DESC LIMIT 1", (dataset,)).fetchone()
    if row is None or row[1] == "done":
        return None
    run, status, reason, started, loaded, file_name = row
    if status == "running":
        return (f"its ingest of {file_name} (run {run}, started {started:%Y-%m-%d %H:%M:%S %Z}) has not finished: "
                "wait for it to end; if no ingest is running, it was killed: run it again")
    return (f"its last ingest of {file_name} (run {run}) failed after {loaded} rows ({reason}): the rows are partly "
            "loaded; run `leadscore ingest crm` on that file again (rows already loaded are updated, not doubled)")


def check_whole(conn, dataset: str) -> None:  # noqa: ANN001
    """Raise PartialDataset if `dataset`'s newest ingest did not finish."""
    why = unfinished(conn, dataset)
    if why:
        raise PartialDataset(f"dataset {dataset!r} is partial: {why}")
