"""`leadscore privacy consent grant|withdraw` and `POST /consent`: change consent, with effect everywhere.

Each change updates compliance.consent (the current state the scoring service mirrors: a withdrawal refuses
scoring as soon as it commits), appends to the hash-chained ledger and the audit log, all in one transaction.
A withdrawal then acts at once: `scoring` removes the lead's online features (training sets skip it from now on),
`text_analysis` deletes its messages, embeddings and text signal, and when no purpose remains granted an erasure
request is queued (`leadscore privacy erase --queued` carries it out).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from compliance.erase import PrivacyError, check_ids
from infra.config import Settings

ROLE = "privacy"  # its own PostgreSQL login (infra/migrations/0021_privacy_role.sql)

CHANNELS = ("crm_export", "api", "cli", "consent_manager", "web_form", "call", "email", "sms", "whatsapp")


@dataclass
class ConsentOutcome:
    """What a consent change did."""

    leads: int
    purpose: str
    granted: bool
    notice_version: str
    ledger_seq: int
    effects: dict[str, int] = field(default_factory=dict)
    erasures_queued: list[str] = field(default_factory=list)


def check_change(purpose: str, notice_version: str | None, channel: str) -> str:
    """The notice version to record; PrivacyError naming the field when purpose, notice or channel is unknown."""
    from compliance import notices

    if purpose not in notices.PURPOSES:
        raise PrivacyError(f"purpose: unknown purpose {purpose!r}; known are {list(notices.PURPOSES)}")
    if channel not in CHANNELS:
        raise PrivacyError(f"channel: unknown channel {channel!r}; known are {list(CHANNELS)}")
    version = notice_version or notices.current()
    try:
        notices.check(version, purpose)
    except notices.NoticeError as exc:
        raise PrivacyError(f"notice_version: {exc}") from None
    return version


def set_consent(settings: Settings, lead_ids: Sequence[str], purpose: str, granted: bool,
                notice_version: str | None = None, channel: str = "cli", recorded_by: str = "operator",
                expires_at: datetime | None = None) -> ConsentOutcome:
    """Record `granted` for `purpose` for every lead, then apply a withdrawal's effects."""
    import psycopg

    from compliance import notices
    from compliance.ledger import Change, append
    from compliance.tokens import Tokenizer

    ids = check_ids(lead_ids)
    version = check_change(purpose, notice_version, channel)
    tokens = Tokenizer(settings).many(ids)
    with psycopg.connect(settings.pg_dsn(role=ROLE)) as conn:
        notices.publish(settings)
        conn.execute("""INSERT INTO compliance.consent AS t (lead_id, purpose, granted, source, recorded_at, expires_at)
            SELECT id, %s, %s, %s, now(), %s FROM unnest(%s::text[]) id
            ON CONFLICT (lead_id, purpose) DO UPDATE SET granted = EXCLUDED.granted, source = EXCLUDED.source,
                recorded_at = now(), expires_at = EXCLUDED.expires_at""",
                     (purpose, granted, f"{channel} ({version}, by {recorded_by})", expires_at, ids))
        seq = append(conn, settings, [Change(lead, purpose, granted, version, channel, recorded_by) for lead in ids],
                     tokens)
        action = "consent_grant" if granted else "consent_withdraw"
        conn.execute("INSERT INTO compliance.audit_log (actor, action, lead_id, purpose, detail) "
                     "SELECT %s, %s, id, %s, %s FROM unnest(%s::text[]) id",
                     (recorded_by, action, purpose, json.dumps({"notice_version": version, "channel": channel}), ids))
    outcome = ConsentOutcome(len(ids), purpose, granted, version, seq)
    if not granted:
        outcome.effects = withdraw_effects(settings, ids, purpose)
        outcome.erasures_queued = queue_erasures(settings, ids, tokens)
    return outcome


def withdraw_effects(settings: Settings, lead_ids: list[str], purpose: str) -> dict[str, int]:
    """What a withdrawal of `purpose` removes at once; store -> rows or keys removed."""
    import psycopg

    effects: dict[str, int] = {}
    if purpose == "scoring":
        from compliance.stores import RedisOnline

        online = RedisOnline(settings)
        try:
            effects["redis:online"] = online.erase(lead_ids)
        finally:
            online.close()
    elif purpose == "text_analysis":
        with psycopg.connect(settings.pg_dsn(role=ROLE)) as conn:
            effects["postgres:text_store.messages"] = conn.execute(
                "DELETE FROM text_store.messages WHERE lead_id = ANY(%s)", (lead_ids,)).rowcount
            effects["postgres:serving.text_signals"] = conn.execute(
                "DELETE FROM serving.text_signals WHERE lead_id = ANY(%s)", (lead_ids,)).rowcount
    return effects


def queue_erasures(settings: Settings, lead_ids: list[str], tokens: list[str]) -> list[str]:
    """An erasure request for each lead with no purpose granted any more (unless one is already open)."""
    import psycopg

    due = datetime.now(UTC) + timedelta(days=settings.privacy().request_due_days)
    with psycopg.connect(settings.pg_dsn(role=ROLE)) as conn:
        rows = conn.execute(
            """SELECT m.id, m.token FROM unnest(%s::text[], %s::text[]) AS m(id, token)
               WHERE NOT EXISTS (SELECT 1 FROM compliance.consent c WHERE c.lead_id = m.id AND c.granted
                                 AND c.purpose <> 'parental_consent'
                                 AND (c.expires_at IS NULL OR c.expires_at > now()))
                 AND NOT EXISTS (SELECT 1 FROM compliance.requests r WHERE r.lead_token = m.token
                                 AND r.kind = 'erasure' AND r.status IN ('open', 'queued'))""",
            (lead_ids, tokens)).fetchall()
        queued = []
        for lead, token in rows:
            request_id = f"rq_{secrets.token_hex(8)}"
            conn.execute("INSERT INTO compliance.requests (request_id, kind, lead_token, lead_id, due_at, status, "
                         "channel, detail) VALUES (%s, 'erasure', %s, %s, %s, 'queued', 'withdrawal', %s)",
                         (request_id, token, lead, due, json.dumps({"reason": "no purpose remains granted"})))
            queued.append(request_id)
    return queued


def consent_state(settings: Settings, lead_id: str, tenant: str | None = None) -> dict:
    """The lead's current consent per purpose and its ledger history (what GET /consent/{lead_id} answers). With
    `tenant` (the API's caller) it is read under row-level security: that tenant's rows only."""
    import contextlib

    import psycopg

    from compliance.tenants import tenant_reads
    from compliance.tokens import Tokenizer

    (lead_id,) = check_ids([lead_id])
    token = Tokenizer(settings)(lead_id)
    with psycopg.connect(settings.pg_dsn(role=ROLE)) as conn, \
            (tenant_reads(conn, tenant) if tenant is not None else contextlib.nullcontext()):
        current = conn.execute(
            "SELECT purpose, granted AND (expires_at IS NULL OR expires_at > now()), granted, source, recorded_at, "
            "expires_at FROM compliance.consent WHERE lead_id = %s ORDER BY purpose", (lead_id,)).fetchall()
        history = conn.execute(
            "SELECT seq, at, purpose, granted, notice_version, channel, recorded_by FROM compliance.consent_ledger "
            "WHERE lead_token = %s ORDER BY seq", (token,)).fetchall()
    return {
        "lead_id": lead_id, "held": bool(current or history),
        "purposes": {p: {"granted": bool(active), "recorded": granted, "source": source,
                         "recorded_at": at.isoformat(), "expires_at": exp.isoformat() if exp else None}
                     for p, active, granted, source, at, exp in current},
        "history": [{"seq": s, "at": at.isoformat(), "purpose": p, "granted": g, "notice_version": n,
                     "channel": c, "recorded_by": by} for s, at, p, g, n, c, by in history],
    }
