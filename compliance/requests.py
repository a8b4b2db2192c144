"""Principal requests (access, correction, erasure, grievance) with due dates: `leadscore privacy requests`."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime, timedelta

from infra.config import Settings

ROLE = "privacy"  # its own PostgreSQL login (infra/migrations/0021_privacy_role.sql)

KINDS = ("access", "correction", "erasure", "grievance")


def open_request(settings: Settings, kind: str, lead_id: str, channel: str, detail: dict | None = None,
                 status: str = "open") -> str:
    """Record a request; its due date follows the kind (grievances: LEADSCORE_PRIVACY_GRIEVANCE_DUE_DAYS)."""
    import psycopg

    from compliance.erase import PrivacyError, check_ids
    from compliance.tokens import Tokenizer

    if kind not in KINDS:
        raise PrivacyError(f"kind: unknown request kind {kind!r}; known are {list(KINDS)}")
    (lead_id,) = check_ids([lead_id])
    privacy = settings.privacy()
    days = privacy.grievance_due_days if kind == "grievance" else privacy.request_due_days
    request_id, now = f"rq_{secrets.token_hex(8)}", datetime.now(UTC)
    with psycopg.connect(settings.pg_dsn(role=ROLE)) as conn:
        conn.execute("INSERT INTO compliance.requests (request_id, kind, lead_token, lead_id, received_at, due_at, "
                     "status, channel, detail) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                     (request_id, kind, Tokenizer(settings)(lead_id), lead_id, now, now + timedelta(days=days),
                      status, channel, json.dumps(detail or {})))
    return request_id


def close_request(conn, request_id: str, status: str = "done", detail: dict | None = None) -> None:  # noqa: ANN001
    conn.execute("UPDATE compliance.requests SET status = %s, closed_at = now(), detail = detail || %s "
                 "WHERE request_id = %s", (status, json.dumps(detail or {}), request_id))


def queued_erasures(settings: Settings) -> dict[str, str]:
    """lead_id -> request id of every erasure waiting to be carried out."""
    import psycopg

    with psycopg.connect(settings.pg_dsn(role=ROLE)) as conn:
        return dict(conn.execute("SELECT lead_id, request_id FROM compliance.requests WHERE kind = 'erasure' AND "
                                 "status IN ('open', 'queued') AND lead_id IS NOT NULL ORDER BY received_at"
                                 ).fetchall())


def list_requests(settings: Settings, overdue: bool = False, open_only: bool = True) -> list[dict]:
    """Requests, oldest due first (open ones, or only those past their due date)."""
    import psycopg

    where = ["status IN ('open', 'queued')"] if open_only or overdue else []
    if overdue:
        where.append("due_at < now()")
    sql = ("SELECT request_id, kind, lead_id, received_at, due_at, status, channel, closed_at FROM compliance.requests"
           + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY due_at")
    with psycopg.connect(settings.pg_dsn(role=ROLE)) as conn:
        rows = conn.execute(sql).fetchall()
    keys = ["request_id", "kind", "lead_id", "received_at", "due_at", "status", "channel", "closed_at"]
    return [dict(zip(keys, row, strict=True)) for row in rows]
