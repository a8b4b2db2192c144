"""Console sign-in: an access token or an API key exchanged for a server-side session, and its form tokens.

A person signs in with what LeadScore already issues: a signed token (`leadscore serve token create`: its claims
name the tenant, broker and role) or an API key (`leadscore serve keys create`: a key of a broker is a broker, a
key with the privacy scope a privacy officer, any other key of a tenant a manager). The browser then holds only a
random session id (cookie `ls_session`: HttpOnly, SameSite=Strict, Secure over TLS, path /console); the table
serving.console_sessions (migration 0018) keeps its SHA-256 with the person's tenant, broker, role, expiry and the
form token every state-changing form must send back (CSRF). Signing out deletes the row: the cookie opens nothing
after it, even if copied.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from serving.db import Db

COOKIE = "ls_session"
PRE_COOKIE = "ls_signin"  # the sign-in form's token before a session exists (double submit)
ROLES = ("broker", "manager", "data_scientist", "privacy_officer")
LEAD_ROLES = ("broker", "manager", "data_scientist")  # who sees leads and scores (the 'score' scope)


@dataclass(frozen=True)
class Session:
    """Who is signed in: their account (or key id), tenant, broker, role, form token and expiry."""

    subject: str
    tenant: str
    broker: str | None
    role: str
    csrf: str
    expires_at: datetime

    @property
    def sees_leads(self) -> bool:
        return self.role in LEAD_ROLES


def _sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def same(a: str | None, b: str | None) -> bool:
    """Constant-time equality of two form tokens (False when either is missing)."""
    return bool(a) and bool(b) and hmac.compare_digest(str(a), str(b))


def role_of_key(key: Any) -> str:  # noqa: ANN401 - serving.keys.ApiKey
    """The console role an API key signs in as."""
    if key.broker:
        return "broker"
    if "privacy" in key.scopes and "score" not in key.scopes:
        return "privacy_officer"
    return "manager"


def exchange(service: Any, presented: str) -> tuple[str, str, str | None, str] | None:  # noqa: ANN401
    """(subject, tenant, broker, role) for a valid token or key, else None (blocking: call off the event loop)."""
    from serving.tokens import looks_like_jwt

    presented = presented.strip()
    if not presented or len(presented) > 4096:
        return None
    if looks_like_jwt(presented):
        claims = service.tokens.claims(presented)
        if claims is None:
            return None
        return claims["sub"][:64], claims["tenant"], claims.get("broker"), claims["role"]
    key = service.engine.keys.verify(presented)
    if key is None:
        return None
    tenant = "default" if key.tenant == "admin" else key.tenant  # admin keys act in the default tenant
    return f"key:{key.key_id}", tenant, key.broker, role_of_key(key)


class SessionStore:
    """Sessions in serving.console_sessions, read and written as the console's own login role."""

    def __init__(self, db: Db, ttl_s: float) -> None:
        self.db = db
        self.ttl_s = ttl_s

    def create(self, subject: str, tenant: str, broker: str | None, role: str) -> tuple[str, Session]:
        """A new session: (the id for the cookie, the session)."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}")
        sid, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        expires = datetime.now(UTC) + timedelta(seconds=self.ttl_s)
        with self.db.conn() as conn:
            conn.execute("DELETE FROM serving.console_sessions WHERE expires_at < now()")
            conn.execute("INSERT INTO serving.console_sessions (id_sha256, subject, tenant, broker, role, csrf, "
                         "expires_at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                         (_sha(sid), subject, tenant, broker, role, csrf, expires))
        return sid, Session(subject, tenant, broker, role, csrf, expires)

    def get(self, sid: str | None) -> Session | None:
        """The live session of a cookie's id, or None (unknown, ended or expired)."""
        if not sid or len(sid) > 128:
            return None
        with self.db.conn() as conn:
            row = conn.execute("SELECT subject, tenant, broker, role, csrf, expires_at FROM serving.console_sessions "
                               "WHERE id_sha256 = %s AND expires_at > now()", (_sha(sid),)).fetchone()
        return Session(*row) if row else None

    def end(self, sid: str | None) -> None:
        """Sign out: the session's row is deleted."""
        if sid:
            with self.db.conn() as conn:
                conn.execute("DELETE FROM serving.console_sessions WHERE id_sha256 = %s", (_sha(sid),))
