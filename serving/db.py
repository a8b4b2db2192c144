"""Postgres for the request path: one persistent connection per user, short timeouts, and a circuit breaker.

After a failure the breaker stays open for `cooldown_s`: requests meanwhile fail at once with `Unavailable`
instead of each waiting for a connect timeout, so a dead database gives fast 503s, never a pile-up.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from infra.config import Settings


class Unavailable(RuntimeError):
    """A dependency (Postgres or Redis) did not answer: the request gets a 503 naming it."""

    def __init__(self, dependency: str, why: str) -> None:
        super().__init__(f"{dependency} unavailable: {why}")
        self.dependency = dependency


class Db:
    """A lazily (re)opened autocommit connection guarded by a lock and a breaker."""

    def __init__(self, settings: Settings, statement_timeout_ms: int = 2000, cooldown_s: float = 1.0,
                 role: str | None = None) -> None:
        self.dsn = settings.pg_dsn(role=role)
        self.statement_timeout_ms = statement_timeout_ms
        self.cooldown_s = cooldown_s
        self._conn = None
        self._lock = threading.Lock()
        self._open_until = 0.0
        self._last_error = ""

    def _connect(self):  # noqa: ANN202 - psycopg.Connection
        import psycopg

        return psycopg.connect(self.dsn, autocommit=True, connect_timeout=2,
                               options=f"-c statement_timeout={self.statement_timeout_ms}")

    @contextmanager
    def conn(self) -> Iterator:
        """The connection, for one short unit of work; raises Unavailable when Postgres cannot be reached."""
        import psycopg

        with self._lock:
            if time.monotonic() < self._open_until:
                raise Unavailable("postgres", self._last_error)
            try:
                if self._conn is None or self._conn.closed or self._stale():
                    self._conn = self._connect()
                yield self._conn
            except psycopg.OperationalError as exc:
                self._trip(exc)
                raise Unavailable("postgres", self._last_error) from None
            except psycopg.errors.QueryCanceled as exc:
                self._trip(exc)
                raise Unavailable("postgres", "query timed out") from None

    @staticmethod
    @contextmanager
    def tenant(conn, tenant: str) -> Iterator:  # noqa: ANN001 - psycopg.Connection
        """A transaction on `conn` that reads as `tenant` (its stored-id namespace): row-level security shows the
        serving login only that tenant's consent, minors, messages, labels and text signals
        (infra/migrations/0025_serving_tenant_rows.sql); a read outside such a transaction sees none."""
        with conn.transaction():
            conn.execute("SELECT set_config('leadscore.tenant', %s, true)", (tenant,))
            yield conn

    def _stale(self) -> bool:
        """True (and the connection closed) if the idle connection was ended by the server: a PostgreSQL restart or
        a terminated backend leaves a message and EOF on its socket, which only its next query would otherwise
        meet as a 503. Costs one poll of the socket, and a round trip only when it holds data."""
        import select

        import psycopg

        try:
            readable = select.select([self._conn.fileno()], [], [], 0)[0]
            if not readable:
                return False
            self._conn.execute("SELECT 1")  # data on an idle connection: a notice, or the server's goodbye
            return False
        except (psycopg.Error, OSError, ValueError):
            with contextlib.suppress(Exception):
                self._conn.close()
            return True

    def _trip(self, exc: Exception) -> None:
        self._last_error = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        self._open_until = time.monotonic() + self.cooldown_s
        if self._conn is not None:
            with contextlib.suppress(Exception):  # already broken
                self._conn.close()
        self._conn = None

    def ping(self) -> bool:
        try:
            with self.conn() as c:
                c.execute("SELECT 1")
            return True
        except Unavailable:
            return False
