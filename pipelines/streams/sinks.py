"""Where a batch of stream results goes: offline rows, online rows, labels and message text, all idempotent.

Called from the agent in worker threads (PostgreSQL and Redis side by side), once per batch, before the batch's
offsets may be committed: if any write fails the batch is not acknowledged and is processed again (the writes are
upserts keyed by lead and event time, or by event id, so a replay rewrites the same rows).
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from compliance.children import UNPROTECTED_MINORS
from infra.config import Settings
from pipelines.streams.aggregate import FEATURE_COLUMNS

LABEL_OF_STATUS = {"converted": 1, "lost": 0}
ROLE = "streams"  # the workers' own PostgreSQL login (infra/migrations/0015_streams_role.sql)
STREAM_DATASET = "broker_leads"  # the label set stream conversions feed (spec feature_repo/datasets/broker_leads.yaml)


@dataclass
class Batch:
    """What one batch of events produced."""

    rows: dict[str, dict[str, Any]] = field(default_factory=dict)  # lead_id -> engagement row
    labels: list[tuple[str, datetime, int]] = field(default_factory=list)
    # (event id, lead id, kind, direction, sent at, text)
    messages: list[tuple[str, str, str, str, datetime, str]] = field(default_factory=list)

    def items(self) -> list[tuple]:
        """Each thing the batch writes, as a key: ("row", lead), ("label", lead, i), ("message", event id, i)."""
        return ([("row", lead) for lead in self.rows] + [("label", lab[0], i) for i, lab in enumerate(self.labels)]
                + [("message", m[0], i) for i, m in enumerate(self.messages)])

    def only(self, items: list[tuple]) -> Batch:
        """The part of the batch those items are."""
        rows = {k[1] for k in items if k[0] == "row"}
        labels = {k[2] for k in items if k[0] == "label"}
        messages = {k[2] for k in items if k[0] == "message"}
        return Batch({lead: r for lead, r in self.rows.items() if lead in rows},
                     [lab for i, lab in enumerate(self.labels) if i in labels],
                     [m for i, m in enumerate(self.messages) if i in messages])


def is_event_fault(exc: BaseException) -> bool:
    """A write refused for what the batch holds (a value or a constraint the database refuses), not because a
    store is unreachable: retrying it as it is cannot succeed."""
    import psycopg

    return isinstance(exc, psycopg.DataError | psycopg.IntegrityError)


def write_isolating(write, batch: Batch) -> tuple[dict[str, int], dict[tuple, str]]:  # noqa: ANN001
    """Write `batch` by halves until each refused item stands alone: (counts written, refused item -> reason).
    A fault of the world (a store down) is raised as it is; the writes are idempotent, so a retry is safe."""
    counts: dict[str, int] = {}
    refused: dict[tuple, str] = {}

    def attempt(items: list[tuple]) -> None:
        try:
            for name, n in write(batch.only(items)).items():
                counts[name] = counts.get(name, 0) + n
        except Exception as exc:
            if not is_event_fault(exc):
                raise
            if len(items) == 1:
                refused[items[0]] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
                return
            attempt(items[: len(items) // 2])
            attempt(items[len(items) // 2:])

    attempt(batch.items())
    return counts, refused


class ConsentCache:
    """Which leads may be scored and whose text may be kept; refreshed incrementally from compliance.consent.

    Also the erasure list (token -> erased at): events of an erased lead dated before its erasure are refused. A
    new erasure reloads the consent sets from scratch (the erased lead's rows are gone) and asks the agent to drop
    table state of leads no longer known (`prune`).
    """

    def __init__(self, settings: Settings) -> None:
        from compliance.tokens import Tokenizer

        self.settings = settings
        self.known: set[str] = set()
        self.scoring: set[str] = set()
        self.text: set[str] = set()
        self.since: datetime | None = None
        self.minors: set[str] = set()  # under 18 without parental consent: never tracked (compliance/children.py)
        self.erased: dict[str, float] = {}  # lead token -> erased at (unix seconds)
        self.erased_since: datetime | None = None
        self.prune = False
        self.token = Tokenizer(settings)
        self.lock = threading.Lock()

    def refresh(self) -> None:
        import psycopg

        with psycopg.connect(self.settings.pg_dsn(role=ROLE)) as conn:
            erased = conn.execute("SELECT lead_token, erased_at FROM compliance.erasure_list WHERE "
                                  "%(since)s::timestamptz IS NULL OR erased_at > %(since)s ORDER BY erased_at",
                                  {"since": self.erased_since}).fetchall()
            self.minors = {r[0] for r in conn.execute(UNPROTECTED_MINORS)}
            full = bool(erased)  # erased leads' consent rows are gone: only a full reload forgets them
            rows = conn.execute(
                "SELECT lead_id, purpose, granted AND (expires_at IS NULL OR expires_at > now()), recorded_at "
                "FROM compliance.consent WHERE %(since)s::timestamptz IS NULL OR recorded_at >= %(since)s",
                {"since": None if full else self.since}).fetchall()
        known, scoring, text = (set(), set(), set()) if full else (self.known, self.scoring, self.text)
        since = None if full else self.since
        with self.lock:
            for lead_id, purpose, granted, recorded_at in rows:
                known.add(lead_id)
                target = scoring if purpose == "scoring" else text if purpose == "text_analysis" else None
                if target is not None:
                    (target.add if granted else target.discard)(lead_id)
                if since is None or recorded_at > since:
                    since = recorded_at
            self.known, self.scoring, self.text, self.since = known, scoring, text, since
            if erased:  # after the reload: the agent drops the state of leads no longer known
                self.erased.update((token, at.timestamp()) for token, at in erased)
                self.erased_since = erased[-1][1]
                self.prune = True


class StoreSink:
    """Writes batches to PostgreSQL (offline store, labels, text store) and Redis (online store)."""

    def __init__(self, settings: Settings) -> None:
        import psycopg

        from pipelines.feature_store import feature_store
        from pipelines.materialize import OnlineWriter

        self.settings = settings
        self.conn = psycopg.connect(settings.pg_dsn(role=ROLE))
        store = feature_store(settings, role=ROLE)
        self.fv = store.get_feature_view("lead_engagement")
        self.writer = OnlineWriter(store, self.fv)
        self.online_features = [f.name for f in self.fv.features]
        self.consent = ConsentCache(settings)
        self.consent.refresh()
        self._types: dict[tuple, list[str]] = {}

    def write(self, batch: Batch) -> dict[str, int]:
        """Write everything: the PostgreSQL part, then the online rows; return counts per sink."""
        return {**self.write_offline(batch), **self.write_online(batch)}

    def write_offline(self, batch: Batch) -> dict[str, int]:
        """Engagement rows, labels and message text in one PostgreSQL transaction; counts per sink.

        Only this thread uses the PostgreSQL connection, so it may run beside `write_online` (the agent does).
        """
        now = datetime.now().astimezone()
        with self.conn.transaction():
            if batch.rows:
                cols = ["lead_id", "event_timestamp", "created_at", *FEATURE_COLUMNS]
                values = [(lead, row["event_timestamp"], now, *(row[c] for c in FEATURE_COLUMNS))
                          for lead, row in batch.rows.items()]
                updates = ", ".join(f'"{c}" = EXCLUDED."{c}"' for c in ["created_at", *FEATURE_COLUMNS])
                self._copy_upsert("offline.lead_engagement", cols, values,
                                  f"(lead_id, event_timestamp) DO UPDATE SET {updates}")
            if batch.labels:
                self._copy_upsert("offline.labels", ["dataset", "lead_id", "event_timestamp", "label"],
                                  [(STREAM_DATASET, *lab) for lab in batch.labels],
                                  "(dataset, lead_id, event_timestamp) DO UPDATE SET label = EXCLUDED.label")
            if batch.messages:
                with self.consent.lock:
                    keep = self.consent.text
                    msgs = [(i, lead, kind, d, at, text if lead in keep else None)
                            for i, lead, kind, d, at, text in batch.messages]
                self._copy_upsert("text_store.messages", ["event_id", "lead_id", "kind", "direction", "sent_at",
                                                          "text"], msgs, "(event_id) DO NOTHING")
        return {"offline": len(batch.rows), "labels": len(batch.labels), "messages": len(batch.messages)}

    def write_online(self, batch: Batch) -> dict[str, int]:
        """The rows of leads with scoring consent into Redis (Feast's layout); {"online": rows written}."""
        now = datetime.now().astimezone()
        features = self.online_features
        with self.consent.lock:
            scoring = self.consent.scoring
            online = [(lead, row["event_timestamp"], now, *(row[f] for f in features))
                      for lead, row in batch.rows.items() if lead in scoring]
        return {"online": self.writer.write(online) if online else 0}

    def _copy_upsert(self, table: str, cols: list[str], values: list[tuple], conflict: str) -> None:
        stage = "stage_" + table.replace(".", "_")
        self.conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {stage} (LIKE {table} INCLUDING DEFAULTS) "
                          "ON COMMIT DELETE ROWS")
        names = ", ".join(f'"{c}"' for c in cols)
        # binary COPY, each value dumped by psycopg's C code as its column's type: about 6x less Python per row
        # than formatting COPY text here
        types = self._column_types(table, cols)
        with self.conn.cursor().copy(f"COPY {stage} ({names}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(types)
            write_row = copy.write_row
            for v in values:
                write_row(v)
        # several events of one lead at the same second would collide in one INSERT: keep the last per key
        self.conn.execute(f"INSERT INTO {table} ({names}) SELECT DISTINCT ON ({conflict.split(')')[0][1:]}) "
                          f"{names} FROM {stage} ORDER BY {conflict.split(')')[0][1:]} ON CONFLICT {conflict}")

    def _column_types(self, table: str, cols: list[str]) -> list[str]:
        """The PostgreSQL types of `cols` in `table`, as COPY's binary format needs them (looked up once)."""
        key = (table, tuple(cols))
        if key not in self._types:
            found = dict(self.conn.execute(
                "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = %s::regclass "
                "AND attnum > 0 AND NOT attisdropped", (table,)).fetchall())
            self._types[key] = [found[c] for c in cols]
        return self._types[key]

    def reconnect(self) -> None:
        import psycopg

        try:
            self.conn.close()
        finally:
            with contextlib.suppress(psycopg.OperationalError):  # still down: the next write fails, the agent retries
                self.conn = psycopg.connect(self.settings.pg_dsn(role=ROLE))

    def reconnect_online(self) -> None:
        """Drop Redis connections after a failed write (a half-read reply must not be reused)."""
        client = getattr(self.writer, "client", None)
        if client is not None:
            with contextlib.suppress(Exception):
                client.connection_pool.disconnect()

    def close(self) -> None:
        self.conn.close()


def wait_for(predicate, timeout: float, interval: float = 0.05) -> bool:  # noqa: ANN001
    """Poll `predicate` until true or `timeout` seconds pass (used by tests and benchmarks)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
