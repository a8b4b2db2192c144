"""Scoring consent (DPDP Act): a lead is scored only with a granted, unexpired `scoring` consent on record.

Answers are cached per lead for `ttl_s` seconds (LEADSCORE_CONSENT_TTL_S, default 5): a withdrawal takes effect
within that time. Each refusal is written to compliance.audit_log by the caller.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from serving.db import Db

PURPOSE = "scoring"
QUERY = """SELECT lead_id FROM compliance.consent WHERE lead_id = ANY(%s) AND purpose = 'scoring' AND granted
           AND (expires_at IS NULL OR expires_at > now())"""


class ConsentChecker:
    def __init__(self, db: Db, ttl_s: float = 5.0, max_entries: int = 1_000_000) -> None:
        self.db = db
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._cache: dict[str, tuple[float, bool]] = {}

    def allowed(self, lead_ids: Sequence[str]) -> dict[str, bool]:
        """lead_id -> may be scored. Raises Unavailable when Postgres is down and an answer is not cached."""
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
            with self.db.conn() as conn:
                granted = {r[0] for r in conn.execute(QUERY, (unique,)).fetchall()}
            if len(self._cache) + len(unique) > self.max_entries:
                self._cache.clear()
            expires = now + self.ttl_s
            for lead_id in unique:
                answer[lead_id] = lead_id in granted
                self._cache[lead_id] = (expires, answer[lead_id])
        return answer
