"""`leadscore privacy retention [--every 1d] [--dry-run] [--now ISO]`: erase what is no longer needed, after notice.

Each run, as of `now`:
1. **Due leads**: a lead's deadline is its last activity (its newest row in any offline feature table or label set,
   or its newest message) plus the inactivity period (LEADSCORE_PRIVACY_INACTIVITY_DAYS, 3 years), or plus a
   dataset's `retention_days` for the leads of that dataset, whichever comes first. A lead whose deadline is less
   than 48 hours away (Rule 8(2)) and has no open notice is sent one: a row in compliance.retention_notices (the
   outbox the CRM delivers from; `leadscore privacy notices` prints the open ones as JSON lines) and, when
   LEADSCORE_PRIVACY_NOTICE_WEBHOOK is set, a POST of the notice to it. The erasure is set no sooner than 48 hours
   after the notice, whatever the deadline.
2. **Notices that ran out**: a lead active again since its notice keeps its data (the notice is cancelled); the
   others are erased together (`compliance.erase`, one receipt) and their notices closed.
3. **Logs past their retention**: prediction-log and audit rows older than LEADSCORE_PRIVACY_LOG_RETENTION_DAYS
   (366) are deleted.
`--dry-run` reports what would happen and writes nothing.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from infra.config import REPO_ROOT, Settings

ROLE = "privacy"  # its own PostgreSQL login (infra/migrations/0021_privacy_role.sql)

SPECS = REPO_ROOT / "feature_repo" / "datasets"
ACTIVITY_EXCLUDED = {"offline.ingest_rejects"}


@dataclass
class RetentionRun:
    as_of: datetime
    dry_run: bool
    noticed: list[str] = field(default_factory=list)  # lead ids sent a notice
    cancelled: int = 0
    erased: list[str] = field(default_factory=list)
    receipt: str | None = None
    purged: dict[str, int] = field(default_factory=dict)
    delivered: int = 0


def _activity_sql(conn) -> str:  # noqa: ANN001
    """lead_id, last activity over every lead-keyed table with an event time, and messages."""
    rows = conn.execute("SELECT table_schema, table_name FROM information_schema.columns WHERE column_name = "
                        "'event_timestamp' AND table_schema = 'offline' AND table_name IN (SELECT table_name FROM "
                        "information_schema.columns WHERE table_schema = 'offline' AND column_name = 'lead_id')"
                        ).fetchall()
    parts = [f'SELECT lead_id, max(event_timestamp) AS ts FROM "{s}"."{t}" GROUP BY 1' for s, t in rows
             if f"{s}.{t}" not in ACTIVITY_EXCLUDED]
    parts.append("SELECT lead_id, max(sent_at) AS ts FROM text_store.messages GROUP BY 1")
    return "SELECT lead_id, max(ts) AS last FROM (" + " UNION ALL ".join(parts) + ") a GROUP BY 1"


def due_leads(conn, settings: Settings, now: datetime, folder: Path = SPECS) -> dict[str, tuple[datetime, datetime,
                                                                                               str]]:  # noqa: ANN001
    """lead -> (last activity, deadline, reason) of every lead whose deadline is within the notice period."""
    from pipelines.spec import load_spec

    privacy = settings.privacy()
    horizon = now + timedelta(hours=privacy.notice_hours)
    inactivity = timedelta(days=privacy.inactivity_days)
    out: dict[str, tuple[datetime, datetime, str]] = {}
    for lead, last in conn.execute(f"SELECT lead_id, last FROM ({_activity_sql(conn)}) x WHERE last < %s",
                                   (horizon - inactivity,)):
        out[lead] = (last, last + inactivity, f"no activity for {privacy.inactivity_days} days")
    for path in sorted(folder.glob("*.yaml")):
        spec = load_spec(path)
        if spec.retention_days is None or not conn.execute("SELECT to_regclass(%s)", (spec.table,)).fetchone()[0]:
            continue
        keep = timedelta(days=spec.retention_days)
        for lead, last in conn.execute(f"SELECT lead_id, max(event_timestamp) FROM {spec.table} GROUP BY 1 "
                                       "HAVING max(event_timestamp) < %s", (horizon - keep,)):
            if lead not in out or last + keep < out[lead][1]:
                out[lead] = (last, last + keep, f"dataset {spec.name}: kept {spec.retention_days} days")
    return out


def _deliver(url: str, notice: dict) -> bool:
    """POST the notice to the CRM's webhook; False (kept for the next run) when it does not answer 2xx."""
    import httpx

    try:
        return httpx.post(url, json=notice, timeout=10).is_success
    except httpx.HTTPError:
        return False


def retention(settings: Settings, now: datetime | None = None, dry_run: bool = False,
              say: Callable[[str], None] = lambda _: None, folder: Path = SPECS) -> RetentionRun:
    """One retention run as of `now` (default: the clock)."""
    import psycopg

    from compliance import notices
    from compliance.erase import erase
    from compliance.tokens import Tokenizer

    now = now or datetime.now(UTC)
    privacy = settings.privacy()
    run = RetentionRun(now, dry_run)
    webhook = settings.env.get("LEADSCORE_PRIVACY_NOTICE_WEBHOOK")
    text = notices.load()[notices.current()].languages["en"].retention
    tok = Tokenizer(settings)
    with psycopg.connect(settings.pg_dsn(role=ROLE)) as conn:
        open_notices = {r[0] for r in conn.execute(
            "SELECT lead_id FROM compliance.retention_notices WHERE status = 'notified' AND lead_id IS NOT NULL")}
        due = {lead: v for lead, v in due_leads(conn, settings, now, folder).items() if lead not in open_notices}
        run.noticed = sorted(due)
        expired = conn.execute("SELECT notice_id, lead_id, noticed_at FROM compliance.retention_notices WHERE "
                               "status = 'notified' AND erase_after <= %s AND lead_id IS NOT NULL", (now,)).fetchall()
        activity = dict(conn.execute(f"SELECT lead_id, last FROM ({_activity_sql(conn)}) x WHERE lead_id = ANY(%s)",
                                     ([e[1] for e in expired],)).fetchall()) if expired else {}
        back = [e for e in expired if activity.get(e[1]) is not None and activity[e[1]] > e[2]]
        gone = [e for e in expired if e not in back]
        run.cancelled, run.erased = len(back), sorted({e[1] for e in gone})
        cutoff = now - timedelta(days=privacy.log_retention_days)
        for table, column in (("serving.prediction_log", "at"), ("compliance.audit_log", "at")):
            run.purged[table] = conn.execute(f"SELECT count(*) FROM {table} WHERE {column} < %s",
                                             (cutoff,)).fetchone()[0]
        if dry_run:
            return run
        for lead, (last, deadline, reason) in due.items():
            notice_id = f"rn_{secrets.token_hex(8)}"
            erase_after = max(deadline, now + timedelta(hours=privacy.notice_hours))
            conn.execute("INSERT INTO compliance.retention_notices (notice_id, lead_token, lead_id, reason, "
                         "last_activity, noticed_at, erase_after, status) VALUES (%s, %s, %s, %s, %s, %s, %s, "
                         "'notified')", (notice_id, tok(lead), lead, reason, last, now, erase_after))
        for notice_id, _lead, _at in back:
            conn.execute("UPDATE compliance.retention_notices SET status = 'cancelled', closed_at = %s WHERE "
                         "notice_id = %s", (now, notice_id))
        conn.execute("DELETE FROM serving.prediction_log WHERE at < %s", (cutoff,))
        conn.execute("SET LOCAL ROLE leadscore_retention")  # the audit log is append-only for every other role
        conn.execute("DELETE FROM compliance.audit_log WHERE at < %s", (cutoff,))
        conn.execute("RESET ROLE")
        conn.execute("INSERT INTO compliance.audit_log (actor, action, detail) VALUES ('retention', 'retention', %s)",
                     (json.dumps({"as_of": now.isoformat(), "noticed": len(due), "cancelled": len(back),
                                  "erasing": len(run.erased), "purged": run.purged}),))
        if webhook:
            pending = conn.execute("SELECT notice_id, lead_id, reason, erase_after FROM compliance.retention_notices "
                                   "WHERE status = 'notified' AND NOT delivered AND lead_id IS NOT NULL").fetchall()
            conn.commit()
            for notice_id, lead, reason, erase_after in pending:
                if _deliver(webhook, {"notice_id": notice_id, "lead_id": lead, "reason": reason,
                                      "erase_after": erase_after.isoformat(), "text": text}):
                    conn.execute("UPDATE compliance.retention_notices SET delivered = true WHERE notice_id = %s",
                                 (notice_id,))
                    run.delivered += 1
    if run.erased:
        say(f"erasing {len(run.erased)} lead(s) whose notice ran out")
        done = erase(settings, run.erased, "retention", "retention")
        run.receipt = done.receipt["request_id"]
        with psycopg.connect(settings.pg_dsn(role=ROLE)) as conn:
            conn.execute("UPDATE compliance.retention_notices SET status = 'erased', closed_at = %s WHERE "
                         "notice_id = ANY(%s)", (now, [e[0] for e in gone]))
    return run


def pending_notices(settings: Settings) -> list[dict]:
    """The open notices, for a CRM job to deliver (`leadscore privacy notices`)."""
    import psycopg

    with psycopg.connect(settings.pg_dsn(role=ROLE)) as conn:
        rows = conn.execute("SELECT notice_id, lead_id, reason, noticed_at, erase_after, delivered FROM "
                            "compliance.retention_notices WHERE status = 'notified' AND lead_id IS NOT NULL "
                            "ORDER BY erase_after").fetchall()
    return [{"notice_id": n, "lead_id": lead, "reason": r, "noticed_at": a.isoformat(),
             "erase_after": e.isoformat(), "delivered": d} for n, lead, r, a, e, d in rows]
