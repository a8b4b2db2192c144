"""API keys: `ls_<key_id>_<secret>`, stored as an HMAC-SHA256 of the secret under a server-side pepper.

The pepper lives in the state directory's secrets (mode 0600) or LEADSCORE_API_KEY_PEPPER_PASSWORD, so a copy of
the database alone cannot test guesses. Verified keys are cached in the process for `ttl_s` seconds: a revoked key
stops working within that time.

Rates count leads, not calls: a /rank of 1,000 leads costs 1,000 of the key's tokens (one /score costs one). The
burst (what may arrive at once above the rate) is two seconds' worth of the rate unless set.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
from dataclasses import dataclass

from infra.config import Settings

PEPPER = "api_key_pepper"
PREFIX = "ls"
SCOPES = ("score", "consent", "privacy")  # /score and /rank; /consent; /privacy/* (erasure, export)
DEFAULT_RATE = 1000.0  # leads per second


def default_burst(rate_per_s: float) -> int:
    """Two seconds' worth of the rate (at least one)."""
    return max(1, math.ceil(2 * rate_per_s))


@dataclass(frozen=True)
class ApiKey:
    """What a verified key grants: who it is (tenant, broker), what it may do and its rate limit."""

    key_id: str
    tenant: str
    broker: str | None
    rate_per_s: float
    burst: int
    scopes: tuple[str, ...] = ("score",)

    def may(self, scope: str) -> bool:
        """Keys of tenant 'admin' may do everything; others what their scopes say."""
        return self.tenant == "admin" or scope in self.scopes


def digest(pepper: str, secret: str) -> str:
    return hmac.new(pepper.encode(), secret.encode(), hashlib.sha256).hexdigest()


def split_key(token: str) -> tuple[str, str] | None:
    """(key_id, secret) of a well-formed key, else None."""
    parts = token.strip().split("_")
    if len(parts) != 3 or parts[0] != PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


def create_key(settings: Settings, tenant: str, broker: str | None = None, rate_per_s: float = DEFAULT_RATE,
               burst: int | None = None, description: str = "",
               scopes: tuple[str, ...] = ("score",)) -> tuple[str, ApiKey]:
    """Create a key; return (the key, shown once and never stored, its grant). `burst` defaults from the rate."""
    import psycopg

    burst = default_burst(rate_per_s) if burst is None else burst

    from compliance.tenants import check_tenant

    if not tenant.strip():
        raise ValueError("a key needs a tenant (the broker firm or CRM it belongs to)")
    check_tenant(tenant)  # a key sees its tenant's leads only (compliance/tenants.py)
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise ValueError(f"unknown scope(s) {unknown}: a key's scopes are some of {list(SCOPES)}")
    scopes = tuple(dict.fromkeys(scopes))
    key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(24).replace("_", "x")
    pepper = settings.secret(PEPPER, create=True)
    with psycopg.connect(settings.pg_dsn()) as conn:
        conn.execute("INSERT INTO serving.api_keys (key_id, tenant, broker, secret_hmac, rate_per_s, burst, "
                     "description, scopes) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                     (key_id, tenant, broker, digest(pepper, secret), rate_per_s, burst, description, list(scopes)))
    return f"{PREFIX}_{key_id}_{secret}", ApiKey(key_id, tenant, broker, rate_per_s, burst, scopes)


def list_keys(settings: Settings) -> list[tuple]:
    import psycopg

    with psycopg.connect(settings.pg_dsn()) as conn:
        return conn.execute("SELECT key_id, tenant, broker, rate_per_s, burst, created_at, revoked_at, description, "
                            "scopes FROM serving.api_keys ORDER BY created_at").fetchall()


def revoke_key(settings: Settings, key_id: str) -> bool:
    import psycopg

    with psycopg.connect(settings.pg_dsn()) as conn:
        cur = conn.execute("UPDATE serving.api_keys SET revoked_at = now() WHERE key_id = %s AND revoked_at IS NULL",
                           (key_id,))
        return cur.rowcount == 1


class KeyVerifier:
    """Checks presented keys against serving.api_keys, with a short in-process cache of answers."""

    def __init__(self, settings: Settings, connect, ttl_s: float = 30.0) -> None:  # noqa: ANN001 - () -> conn
        self.pepper = settings.secret(PEPPER, create=True)
        self.connect = connect
        self.ttl_s = ttl_s
        self._cache: dict[str, tuple[float, ApiKey | None]] = {}

    def cached(self, token: str) -> tuple[bool, ApiKey | None]:
        """(True, grant or None) if the answer for this token is cached and fresh; (False, None) otherwise."""
        hit = self._cache.get(token)
        if hit and hit[0] > time.monotonic():
            return True, hit[1]
        return False, None

    def verify(self, token: str | None) -> ApiKey | None:
        """The grant of a valid, unrevoked key; None for anything else. May raise if Postgres is unreachable."""
        if not token:
            return None
        now = time.monotonic()
        hit = self._cache.get(token)
        if hit and hit[0] > now:
            return hit[1]
        parts = split_key(token)
        grant = None
        if parts is not None:
            key_id, secret = parts
            with self.connect() as conn:
                row = conn.execute("SELECT tenant, broker, secret_hmac, rate_per_s, burst, scopes FROM "
                                   "serving.api_keys WHERE key_id = %s AND revoked_at IS NULL", (key_id,)).fetchone()
            if row and hmac.compare_digest(row[2], digest(self.pepper, secret)):
                grant = ApiKey(key_id, row[0], row[1], float(row[3]), int(row[4]), tuple(row[5]))
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[token] = (now + self.ttl_s, grant)
        return grant


class RateLimiter:
    """A token bucket per key, in this worker process (each of N workers allows rate/N: see docs/serving.md)."""

    def __init__(self, workers: int = 1) -> None:
        self.workers = max(1, workers)
        self._buckets: dict[str, tuple[float, float]] = {}  # key_id -> (tokens, last refill time)

    def allow(self, key: ApiKey, cost: float = 1.0) -> float:
        """0.0 if a call costing `cost` tokens (its leads) may go ahead (tokens taken), else the seconds to wait.

        A call bigger than the burst goes ahead on a full bucket and leaves the bucket in debt for the rest: a
        /rank of 10,000 leads at 1,000 leads/s is answered, and the key's next call waits about 8 s."""
        rate, burst = key.rate_per_s / self.workers, max(1.0, key.burst / self.workers)
        now = time.monotonic()
        tokens, last = self._buckets.get(key.key_id, (burst, now))
        tokens = min(burst, tokens + (now - last) * rate)
        needed = min(cost, burst)
        if tokens >= needed:
            self._buckets[key.key_id] = (tokens - cost, now)
            return 0.0
        self._buckets[key.key_id] = (tokens, now)
        return (needed - tokens) / rate
