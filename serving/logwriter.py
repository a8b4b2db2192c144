"""Prediction log and audit records, written to Postgres in batches by a background thread, off the request path.

Requests only append to an in-memory queue. The thread flushes every `every_s` seconds (or sooner when `batch`
rows wait) with COPY into a temporary table of the connection, moved into the log by INSERT ... SELECT (the
scoring role is subject to row-level security, and PostgreSQL refuses COPY FROM into such a table; the staging keeps
COPY's speed). If Postgres is down the rows wait in memory and the flush is retried; past `max_pending`
rows the oldest are dropped and counted (`leadscore_serving_log_dropped_total`), so a long outage cannot exhaust
memory. `close()` flushes what is left.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime

log = logging.getLogger("leadscore.serving.log")

# a prediction row is (shared part, per-lead part): one call's leads share who asked, when and which model
SHARED_COLUMNS = ("at", "endpoint", "request_id", "key_id", "tenant", "model_name", "model_version", "feature_service")
# `features` is the row the model scored (a dict, written as JSON), or None when the call was not sampled
LEAD_COLUMNS = ("lead_id", "score", "tier", "text_signal", "rank_score", "inline_features", "features")
PREDICTION_COLUMNS = SHARED_COLUMNS + LEAD_COLUMNS
AUDIT_COLUMNS = ("at", "actor", "action", "lead_id", "purpose", "detail")
TYPES = {"at": "timestamptz", "score": "float8", "text_signal": "float8", "rank_score": "float8",
         "inline_features": "integer", "features": "jsonb", "detail": "jsonb"}  # every other column is text
STAGES = {"audit": ("compliance.audit_log", AUDIT_COLUMNS),
          "prediction": ("serving.prediction_log", PREDICTION_COLUMNS)}


def _stage_sql(kind: str) -> str:
    """The connection's temporary staging table of `kind`, emptied at each commit."""
    columns = ", ".join(f"{c} {TYPES.get(c, 'text')}" for c in STAGES[kind][1])
    return f"CREATE TEMP TABLE IF NOT EXISTS leadscore_stage_{kind} ({columns}) ON COMMIT DELETE ROWS"


class LogWriter:
    """Background batch writer of serving.prediction_log and compliance.audit_log rows."""

    def __init__(self, connect: Callable, every_s: float = 0.5, batch: int = 5000, max_pending: int = 500_000,
                 on_drop: Callable[[str, int], None] | None = None,
                 on_flush: Callable[[str, int], None] | None = None) -> None:
        self.connect = connect
        self.every_s = every_s
        self.batch = batch
        self.max_pending = max_pending
        self.on_drop = on_drop or (lambda kind, n: None)
        self.on_flush = on_flush or (lambda kind, n: None)
        self.predictions: deque[tuple] = deque()
        self.audits: deque[tuple] = deque()
        self._conn = None  # one connection, kept between flushes; reopened after a failure
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="leadscore-log-writer", daemon=True)
        self._thread.start()

    @staticmethod
    def now() -> datetime:
        return datetime.now(UTC)

    def add_predictions(self, shared: tuple, leads: list[tuple]) -> None:
        """Queue prediction rows: `shared` in SHARED_COLUMNS order, each of `leads` in LEAD_COLUMNS order."""
        queue = self.predictions
        queue.extend([(shared, lead) for lead in leads])
        over = len(queue) - self.max_pending
        if over > 0:
            for _ in range(over):
                queue.popleft()
            self.on_drop("prediction", over)
        if len(queue) >= self.batch:
            self._wake.set()

    def audit(self, actor: str, action: str, lead_id: str | None, purpose: str | None, detail: dict) -> None:
        self._push(self.audits, (self.now(), actor, action, lead_id, purpose, json.dumps(detail)), "audit")

    def _push(self, queue: deque, row: tuple, kind: str) -> None:
        queue.append(row)
        if len(queue) > self.max_pending:
            queue.popleft()
            self.on_drop(kind, 1)
        if len(queue) >= self.batch:
            self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.every_s)
            self._wake.clear()
            self.flush()
        self.flush()

    def flush(self) -> int:
        """Write what is queued; return the rows written (0 when Postgres refused: they stay queued)."""
        written = 0
        for queue, kind in ((self.audits, "audit"), (self.predictions, "prediction")):
            table, columns = STAGES[kind]
            names = ", ".join(columns)
            while queue:
                rows = [queue[i] for i in range(min(len(queue), self.batch))]
                try:
                    if self._conn is None or self._conn.closed:
                        self._conn = self.connect()
                        for stage in STAGES:
                            self._conn.execute(_stage_sql(stage))
                        self._conn.commit()
                    with self._conn.cursor() as cur:
                        with cur.copy(f"COPY leadscore_stage_{kind} ({names}) FROM STDIN") as copy:
                            if kind == "prediction":  # COPY text built here: each call's shared part formatted once
                                copy.write(_prediction_text(rows))
                            else:
                                for row in rows:
                                    copy.write_row(row)
                        cur.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM leadscore_stage_{kind}")
                    self._conn.commit()
                except Exception as exc:  # noqa: BLE001 - keep the rows, retry at the next tick
                    log.warning("could not write %d %s rows (%s): retrying", len(rows), kind, exc)
                    self._drop_connection()
                    return written
                for _ in rows:
                    queue.popleft()
                written += len(rows)
                self.on_flush(kind, len(rows))
        return written

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):  # it is being discarded anyway
                conn.close()

    def pending(self) -> int:
        return len(self.predictions) + len(self.audits)

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)
        deadline = time.monotonic() + timeout
        while self.pending() and time.monotonic() < deadline and self.flush():
            pass
        self._drop_connection()


def _json_default(value: object) -> object:
    """What msgspec cannot encode itself: numpy scalars (their Python value), anything else as text."""
    item = getattr(value, "item", None)
    return item() if callable(item) else str(value)


_JSON = None


def _json(value: dict) -> str:
    """A feature row as JSON (msgspec: ~1 us a row; NaN and infinities become null, datetimes ISO 8601)."""
    global _JSON
    if _JSON is None:
        import msgspec

        _JSON = msgspec.json.Encoder(enc_hook=_json_default)
    # jsonb refuses \u0000: one inline value holding a NUL would otherwise fail the whole batch's COPY
    if any(isinstance(v, str) and "\x00" in v for v in value.values()):
        value = {k: v.replace("\x00", "\ufffd") if isinstance(v, str) else v for k, v in value.items()}
    return _JSON.encode(value).decode()


def _copy_value(value: object) -> str:
    r"""One value in COPY's text format: \N for NULL; backslash, tab, newline and carriage return escaped."""
    if value is None:
        return "\\N"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        value = _json(value)
    text = value if isinstance(value, str) else repr(value) if isinstance(value, float) else str(value)
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        text = text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return text


def _prediction_text(rows: list[tuple]) -> str:
    """COPY text for (shared, lead) rows; the shared part of consecutive rows of one call is formatted once."""
    out, last, prefix = [], None, ""
    for shared, lead in rows:
        if shared is not last:
            last, prefix = shared, "\t".join(map(_copy_value, shared)) + "\t"
        out.append(prefix + "\t".join(map(_copy_value, lead)) + "\n")
    return "".join(out)
