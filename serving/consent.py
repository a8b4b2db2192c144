"""Scoring consent (DPDP Act): a lead is scored only with a granted, unexpired `scoring` consent on record.

Two ways to answer, the first preferred:
- **The mirror** (`follow`): every granted scoring consent held in memory (lead -> expiry), loaded once and kept
  current by Postgres itself: a trigger (infra/migrations/0005_consent_notify.sql) announces each committed change
  on channel `leadscore_consent`, and a listener thread re-reads the leads named. A withdrawal takes effect as soon
  as it commits (tested: well under a second), and no request waits for a consent query, however many distinct
  leads it scores. The listener confirms its connection every `ttl_s` / 3; answers from the mirror are trusted only
  while the last confirmation is under `ttl_s` old, so a lost connection (Postgres down, a partition) falls back to:
- **The cache**: answers read on the request path and cached per lead for `ttl_s` seconds
  (LEADSCORE_CONSENT_TTL_S, default 5), a withdrawal taking effect within that time. A background thread re-reads,
  every ttl_s / 2 and in one query, the answers of the leads asked about since its last pass; if Postgres stops
  answering every answer lapses and requests get a 503 naming it.
More granted consents than `mirror_max` (LEADSCORE_CONSENT_MIRROR_MAX, 2,000,000) are not mirrored: the cache
serves alone. Each refusal is written to compliance.audit_log by the caller.

Every answer is per tenant: a lead is asked about as (tenant, stored id), the tenant being the asking key's. The
mirror and the cache are kept per tenant, and each read names its tenant in the transaction, so PostgreSQL's
row-level security shows the serving login that tenant's rows only (infra/migrations/0025): a lead of another
tenant is not in the answer even where a bug asked for its stored id.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence

from compliance.children import UNPROTECTED_MINORS, unprotected_minor
from serving.db import Db

log = logging.getLogger("leadscore.serving")
PURPOSE = "scoring"
# a lead under 18 without verifiable parental consent is not scored either (DPDP Act s.9: compliance/children.py)
_CHILD = unprotected_minor("consent.lead_id")
QUERY = f"""SELECT lead_id FROM compliance.consent WHERE lead_id = ANY(%s) AND purpose = 'scoring' AND granted
           AND (expires_at IS NULL OR expires_at > now()) AND NOT {_CHILD}"""
CHANNEL = "leadscore_consent"
GRANTED = f"""SELECT lead_id, extract(epoch FROM expires_at) FROM compliance.consent
             WHERE purpose = 'scoring' AND granted AND (expires_at IS NULL OR expires_at > now()) AND NOT {_CHILD}"""
TENANTS = "SELECT serving.scoring_tenants()"  # names only (0025): which tenants' rows to load
Lead = tuple[str, str]  # (tenant, stored id)


def by_tenant(leads: Iterable[Lead]) -> dict[str, list[str]]:
    """tenant -> its stored ids (each once, in order)."""
    out: dict[str, list[str]] = defaultdict(list)
    for tenant, lead_id in dict.fromkeys(leads):
        out[tenant].append(lead_id)
    return out


class ConsentChecker:
    def __init__(self, db: Db, ttl_s: float = 5.0, max_entries: int = 1_000_000,
                 mirror_max: int = 2_000_000) -> None:
        self.db = db
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.mirror_max = mirror_max
        self._cache: dict[Lead, tuple[float, bool]] = {}
        self._asked: set[Lead] = set()  # leads asked about since the last refresh
        self._mirror: dict[str, dict[str, float]] | None = None  # tenant -> lead -> expiry (epoch s, inf: none)
        self._children: dict[str, set[str]] = {}  # tenant -> minors without parental consent (the 403's reason)
        self._confirmed = -math.inf  # monotonic time the listener last knew its mirror current
        self._stop = threading.Event()

    @property
    def live(self) -> bool:
        """The mirror is loaded and its listener confirmed it within ttl_s."""
        return self._mirror is not None and time.monotonic() - self._confirmed < self.ttl_s

    def allowed(self, leads: Sequence[Lead]) -> dict[str, bool]:
        """stored id -> may be scored, for (tenant, stored id) pairs: each looked up in its tenant's answers only.
        Raises Unavailable when Postgres is down and an answer is not cached."""
        mirror = self._mirror
        if mirror is not None and time.monotonic() - self._confirmed < self.ttl_s:
            now = time.time()
            return {lead_id: mirror.get(tenant, {}).get(lead_id, 0.0) > now for tenant, lead_id in leads}
        if len(self._asked) < self.max_entries:  # bounded even if no refresher empties it
            self._asked.update(leads)
        now = time.monotonic()
        answer: dict[str, bool] = {}
        missing = []
        for lead in leads:
            hit = self._cache.get(lead)
            if hit and hit[0] > now:
                answer[lead[1]] = hit[1]
            else:
                missing.append(lead)
        for tenant, ids in by_tenant(missing).items():
            answer.update(self._read(self.db, tenant, ids, now))
        return answer

    def minors_among(self, leads: Sequence[Lead]) -> set[str]:
        """Which of these refused leads are children without parental consent: from the mirror while it is live,
        else one query per tenant (empty if it fails: the generic reason is still true)."""
        if self.live:
            return {lead_id for tenant, lead_id in leads if lead_id in self._children.get(tenant, ())}
        try:
            found: set[str] = set()
            with self.db.conn() as conn:
                for tenant, ids in by_tenant(leads).items():
                    with Db.tenant(conn, tenant):
                        found |= {r[0] for r in conn.execute(UNPROTECTED_MINORS + " AND m.lead_id = ANY(%s)",
                                                             (ids,)).fetchall()}
            return found
        except Exception:  # noqa: BLE001 - the generic reason is still true
            return set()

    def _read(self, db: Db, tenant: str, lead_ids: list[str], now: float) -> dict[str, bool]:
        """Query and cache the answers for one tenant's lead_ids (read at `now`)."""
        with db.conn() as conn, Db.tenant(conn, tenant):
            granted = {r[0] for r in conn.execute(QUERY, (lead_ids,)).fetchall()}
        if len(self._cache) + len(lead_ids) > self.max_entries:
            self._cache.clear()
        expires = now + self.ttl_s
        answer = {lead_id: lead_id in granted for lead_id in lead_ids}
        for lead_id, ok in answer.items():
            self._cache[(tenant, lead_id)] = (expires, ok)
        return answer

    def refresh(self, db: Db, chunk: int = 20_000) -> int:
        """Re-read the answers of the leads asked about since the last call; the number refreshed."""
        if self.live:  # the mirror answers; nothing is asked of the cache meanwhile
            return 0
        asked, self._asked = self._asked, set()
        for tenant, ids in by_tenant(sorted(asked)).items():
            for start in range(0, len(ids), chunk):
                self._read(db, tenant, ids[start:start + chunk], time.monotonic())
        return len(asked)

    def start(self, db: Db) -> None:
        """Refresh every ttl_s / 2 on a daemon thread, with its own connection `db`, until `stop()`."""

        def run() -> None:
            while not self._stop.wait(max(0.05, self.ttl_s / 2)):
                try:
                    self.refresh(db)
                except Exception as exc:  # noqa: BLE001 - answers lapse after ttl_s; requests then say why
                    log.debug("consent refresh failed: %s", exc)

        threading.Thread(target=run, name="leadscore-consent-refresh", daemon=True).start()

    def follow(self, dsn: str) -> None:
        """Load the mirror and keep it current from the change announcements, on a daemon thread, until `stop()`."""
        threading.Thread(target=self._follow, args=(dsn,), name="leadscore-consent-listener", daemon=True).start()

    def _follow(self, dsn: str) -> None:
        import psycopg

        beat = max(0.05, self.ttl_s / 3)
        while not self._stop.is_set():
            try:
                with psycopg.connect(dsn, autocommit=True, connect_timeout=2) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")  # before the load: no change can fall between the two
                    if not self._load(conn):
                        return  # too many to mirror: the cache serves alone
                    while not self._stop.is_set():
                        changed: set[str] = set()
                        everything = False
                        for note in conn.notifies(timeout=beat):
                            everything = everything or note.payload == "*"
                            changed.update(p for p in note.payload.split(",") if p and p != "*")
                        if everything:
                            self._load(conn)
                        elif changed:
                            self._reload(conn, changed)
                        else:
                            conn.execute("SELECT 1")  # the connection still answers: nothing was missed
                        self._confirmed = time.monotonic()
            except Exception as exc:  # noqa: BLE001 - the cache answers meanwhile; try again shortly
                self._confirmed = -math.inf
                log.info("consent listener: %s; answering from the cache until it reconnects", exc)
                self._stop.wait(1.0)

    def _load(self, conn) -> bool:  # noqa: ANN001 - psycopg.Connection
        """Read every granted scoring consent into a new mirror, tenant by tenant; False (and no mirror) past
        mirror_max."""
        mirror: dict[str, dict[str, float]] = {}
        children: dict[str, set[str]] = {}
        held = 0
        for (tenant,) in conn.execute(TENANTS).fetchall():
            rows = mirror[tenant] = {}
            with Db.tenant(conn, tenant), conn.cursor(name="leadscore_consent_load") as cursor:  # rows in chunks
                cursor.itersize = 50_000
                for lead_id, expires in cursor.execute(GRANTED):
                    rows[lead_id] = math.inf if expires is None else float(expires)
                    held += 1
                    if held > self.mirror_max:
                        log.warning("more than %d granted scoring consents: not mirrored (LEADSCORE_CONSENT_MIRROR_MAX)"
                                    "; consent is read per request and cached for %g s", self.mirror_max, self.ttl_s)
                        self._mirror = None
                        return False
            with Db.tenant(conn, tenant):
                children[tenant] = {r[0] for r in conn.execute(UNPROTECTED_MINORS).fetchall()}
        self._children = children
        self._mirror = mirror
        self._confirmed = time.monotonic()
        return True

    def _reload(self, conn, lead_ids: Iterable[str]) -> None:  # noqa: ANN001 - psycopg.Connection
        """Re-read the announced leads into the mirror (granted and unexpired stay, the rest go), each under the
        tenant its stored id names (a forged id finds nothing: the row-level security reads that tenant only)."""
        from compliance.tenants import split_id

        mirror = self._mirror
        for tenant, ids in by_tenant((split_id(i)[0], i) for i in lead_ids).items():
            with Db.tenant(conn, tenant):
                fresh = dict(conn.execute(GRANTED + " AND lead_id = ANY(%s)", (ids,)).fetchall())
                children = {r[0] for r in conn.execute(UNPROTECTED_MINORS + " AND m.lead_id = ANY(%s)",
                                                       (ids,)).fetchall()}
            self._children[tenant] = (self._children.get(tenant, set()) - set(ids)) | children
            if mirror is None:
                continue
            rows = mirror.setdefault(tenant, {})
            for lead_id in ids:
                if lead_id in fresh:
                    expires = fresh[lead_id]
                    rows[lead_id] = math.inf if expires is None else float(expires)
                else:
                    rows.pop(lead_id, None)

    def stop(self) -> None:
        self._stop.set()
