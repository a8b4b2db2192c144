"""Scoring consent (DPDP Act): a lead is scored only with a granted, unexpired `scoring` consent on record.

Answers are cached per lead for `ttl_s` seconds (LEADSCORE_CONSENT_TTL_S, default 5): a withdrawal takes effect
within that time. A background thread re-reads, every ttl_s / 2 and in one query, the answers of the leads asked
about since its last pass, so leads scored again and again are never looked up on the request path; a lead nobody
asks about lapses after ttl_s, and if Postgres stops answering every answer lapses and requests get the 503 they
got before. Each refusal is written to compliance.audit_log by the caller.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

from serving.db import Db

log = logging.getLogger("leadscore.serving")
PURPOSE = "scoring"
QUERY = """SELECT lead_id FROM compliance.consent WHERE lead_id = ANY(%s) AND purpose = 'scoring' AND granted
           AND (expires_at IS NULL OR expires_at > now())"""


class ConsentChecker:
    def __init__(self, db: Db, ttl_s: float = 5.0, max_entries: int = 1_000_000) -> None:
        self.db = db
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._cache: dict[str, tuple[float, bool]] = {}
        self._asked: set[str] = set()  # leads asked about since the last refresh
        self._stop = threading.Event()

    def allowed(self, lead_ids: Sequence[str]) -> dict[str, bool]:
        """lead_id -> may be scored. Raises Unavailable when Postgres is down and an answer is not cached."""
        if len(self._asked) < self.max_entries:  # bounded even if no refresher empties it
            self._asked.update(lead_ids)
        now = time.monotonic()
        answer: dict[str, bool] = {}
        missing = []
        for lead_id in lead_ids:
            hit = self._cache.get(lead_id)
            if hit and hit[0] > now:
                answer[lead_id] = hit[1]
            else:
                missing.append(lead_id)
        if missing:
            unique = list(dict.fromkeys(missing))
            answer.update(self._read(self.db, unique, now))
        return answer

    def _read(self, db: Db, lead_ids: list[str], now: float) -> dict[str, bool]:
        """Query and cache the answers for lead_ids (read at `now`)."""
        with db.conn() as conn:
            granted = {r[0] for r in conn.execute(QUERY, (lead_ids,)).fetchall()}
        if len(self._cache) + len(lead_ids) > self.max_entries:
            self._cache.clear()
        expires = now + self.ttl_s
        answer = {lead_id: lead_id in granted for lead_id in lead_ids}
        for lead_id, ok in answer.items():
            self._cache[lead_id] = (expires, ok)
        return answer

    def refresh(self, db: Db, chunk: int = 20_000) -> int:
        """Re-read the answers of the leads asked about since the last call; the number refreshed."""
        asked, self._asked = self._asked, set()
        ids = sorted(asked)
        for start in range(0, len(ids), chunk):
            self._read(db, ids[start:start + chunk], time.monotonic())
        return len(ids)

    def start(self, db: Db) -> None:
        """Refresh every ttl_s / 2 on a daemon thread, with its own connection `db`, until `stop()`."""

        def run() -> None:
            while not self._stop.wait(max(0.05, self.ttl_s / 2)):
                try:
                    self.refresh(db)
                except Exception as exc:  # noqa: BLE001 - answers lapse after ttl_s; requests then say why
                    log.debug("consent refresh failed: %s", exc)

        threading.Thread(target=run, name="leadscore-consent-refresh", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
