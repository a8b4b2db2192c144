"""Prediction log and audit records, written to Postgres in batches by a background thread, off the request path.

Requests only append to an in-memory queue. The thread flushes every `every_s` seconds (or sooner when `batch`
rows wait) with COPY. If Postgres is down the rows wait in memory and the flush is retried; past `max_pending`
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

PREDICTION_COLUMNS = ("at", "endpoint", "request_id", "key_id", "tenant", "lead_id", "model_name", "model_version",
                      "feature_service", "score", "tier", "text_signal", "rank_score", "inline_features")
AUDIT_COLUMNS = ("at", "actor", "action", "lead_id", "purpose", "detail")


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

    def prediction(self, row: tuple) -> None:
        """Queue one prediction row, fields in PREDICTION_COLUMNS order."""
        self._push(self.predictions, row, "prediction")

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
        for queue, table, columns, kind in ((self.audits, "compliance.audit_log", AUDIT_COLUMNS, "audit"),
                                            (self.predictions, "serving.prediction_log", PREDICTION_COLUMNS,
                                             "prediction")):
            while queue:
                rows = [queue[i] for i in range(min(len(queue), self.batch))]
                try:
                    sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
                    if self._conn is None or self._conn.closed:
                        self._conn = self.connect()
                    with self._conn.cursor() as cur, cur.copy(sql) as copy:
                        for row in rows:
                            copy.write_row(row)
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
