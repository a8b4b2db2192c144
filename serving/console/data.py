"""What the console's pages read from PostgreSQL, always as the signed-in person's tenant.

Every query runs inside compliance.tenants.tenant_reads: the console's login role switches to leadscore_tenant for
the tenant of the session, so PostgreSQL's row-level security (migration 0012) hides every other tenant's rows
whatever a query asks for. Lead ids come back as the stores hold them (`tenant/id`) and leave here as the CRM's id.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import sql

from compliance.tenants import split_id, stored_id, tenant_reads
from serving.db import Db

PURPOSES = ("scoring", "marketing_contact", "text_analysis")


@dataclass
class LeadFacts:
    """A lead's page, less its score: last activity, consent per purpose, messages and score history."""

    lead_id: str
    broker: str | None
    last_activity: datetime | None
    consent: list[dict[str, Any]]
    messages: list[dict[str, Any]]
    history: list[dict[str, Any]]
    activity: list[dict[str, Any]]


def feature_tables(store: Any, feature_service: str) -> list[tuple[str, str, str]]:  # noqa: ANN401 - FeatureStore
    """(schema, table, timestamp column) of each offline table behind the service's batch feature views."""
    service = store.get_feature_service(feature_service)
    tables: list[tuple[str, str, str]] = []
    for projection in service.feature_view_projections:
        try:
            view = store.get_feature_view(projection.name)
        except Exception:  # noqa: BLE001 - an on-demand view: no table of its own
            continue
        source = view.batch_source
        options = getattr(source, "_postgres_options", None)
        name = getattr(options, "_table", None) or ""
        schema, _, table = name.rpartition(".")
        entry = (schema or "public", table, source.timestamp_field or "event_timestamp")
        if table and entry not in tables:
            tables.append(entry)
    return tables


def _union(tables: list[tuple[str, str, str]]) -> sql.Composable:
    parts = [sql.SQL("SELECT lead_id, {} AS event_timestamp, {} AS source FROM {}.{}").format(
        sql.Identifier(ts), sql.Literal(t), sql.Identifier(s), sql.Identifier(t)) for s, t, ts in tables]
    return sql.SQL(" UNION ALL ").join(parts)


def recent_leads(db: Db, tenant: str, tables: list[tuple[str, str, str]], limit: int,
                 broker: str | None = None) -> list[tuple[str, datetime, str | None]]:
    """The tenant's `limit` most recently active leads that consent to scoring, only those assigned to `broker`
    when one is given: (CRM id, last activity, assigned broker)."""
    if not tables:
        return []
    mine = sql.SQL("AND b.broker = %(broker)s") if broker is not None else sql.SQL("")
    join = sql.SQL("JOIN") if broker is not None else sql.SQL("LEFT JOIN")
    query = sql.SQL("""SELECT u.lead_id, max(u.event_timestamp) AS last, min(b.broker) FROM ({}) u
        JOIN compliance.consent c ON c.lead_id = u.lead_id AND c.purpose = 'scoring' AND c.granted
             AND (c.expires_at IS NULL OR c.expires_at > now())
        {} offline.lead_brokers b ON b.lead_id = u.lead_id {}
        GROUP BY u.lead_id ORDER BY last DESC, u.lead_id LIMIT %(limit)s""").format(_union(tables), join, mine)
    with db.conn() as conn, tenant_reads(conn, tenant):
        rows = conn.execute(query, {"limit": limit, "broker": broker}).fetchall()
    return [(split_id(lead)[1], last, assigned) for lead, last, assigned in rows]


def lead_facts(db: Db, tenant: str, lead_id: str, tables: list[tuple[str, str, str]], broker: str | None = None,
               history: int = 30, messages: int = 20) -> LeadFacts | None:
    """Everything the lead's page shows besides its score; None when the tenant holds no such lead (or, with
    `broker`, when the lead is not assigned to that broker)."""
    stored = stored_id(tenant, lead_id)
    with db.conn() as conn, tenant_reads(conn, tenant):
        assigned = conn.execute("SELECT broker FROM offline.lead_brokers WHERE lead_id = %s", (stored,)).fetchone()
        if broker is not None and (assigned is None or assigned[0] != broker):
            return None
        activity = []
        if tables:  # each row a feature view holds for the lead is a moment something about it was recorded
            activity = conn.execute(sql.SQL("SELECT event_timestamp, source FROM ({}) u WHERE lead_id = %s ORDER BY "
                                            "event_timestamp DESC LIMIT %s").format(_union(tables)),
                                    (stored, messages)).fetchall()
        last = activity[0][0] if activity else None
        consent = conn.execute("SELECT purpose, granted, source, recorded_at, expires_at FROM compliance.consent "
                               "WHERE lead_id = %s ORDER BY purpose", (stored,)).fetchall()
        if last is None and not consent:
            return None
        said = conn.execute("SELECT kind, direction, sent_at, text FROM text_store.messages WHERE lead_id = %s "
                            "ORDER BY sent_at DESC LIMIT %s", (stored, messages)).fetchall()
        scores = conn.execute("SELECT at, score, tier, model_version, endpoint FROM serving.prediction_log "
                              "WHERE lead_id = %s ORDER BY at DESC LIMIT %s", (stored, history)).fetchall()
    held = {row[0]: row for row in consent}
    return LeadFacts(
        lead_id, assigned[0] if assigned else None, last,
        [{"purpose": p, "granted": bool(held[p][1]) if p in held else None,
          "source": held[p][2] if p in held else None, "recorded_at": held[p][3] if p in held else None,
          "expires_at": held[p][4] if p in held else None} for p in PURPOSES],
        [{"kind": k, "direction": d, "sent_at": t, "text": x} for k, d, t, x in said],
        [{"at": a, "score": float(s), "tier": tr, "model_version": v, "endpoint": e}
         for a, s, tr, v, e in reversed(scores)],
        [{"at": at, "source": source} for at, source in activity])
