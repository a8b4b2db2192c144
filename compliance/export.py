"""`leadscore privacy export LEAD_ID` and `GET /privacy/export/{lead_id}`: everything held about a person, as JSON.

Every lead-keyed table of every schema (found as erasure finds them) is exported whole, so nothing the stores hold
is left out; on top, the answers a person asks for (DPDP Act s.11): consent per purpose with its ledger history and
notice versions, every score served (when, which tenant and broker asked, which model version), with whom it was
shared, and which model versions learned from the data. Hashed PII is shown as stored (the hash). The online
store holds a copy of the latest feature rows (listed as `online: true`). Each export is an access request, closed
at once, and audited.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from infra.config import Settings

ROLE = "privacy"  # its own PostgreSQL login (infra/migrations/0021_privacy_role.sql)

SCORES = """SELECT p.at, p.endpoint, p.tenant, k.broker, p.key_id, p.model_name, p.model_version, p.feature_service,
                   p.score, p.tier FROM serving.prediction_log p LEFT JOIN serving.api_keys k USING (key_id)
            WHERE p.lead_id = %s ORDER BY p.at"""


def _plain(value: Any) -> Any:  # noqa: ANN401 - any database value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes | memoryview):
        return bytes(value).hex()
    return value


def export_lead(settings: Settings, lead_id: str, requested_by: str, channel: str = "cli",
                tenant: str | None = None) -> dict:
    """The person's data from every store, and the access request recorded. With `tenant` (the API's caller) the
    stores are read under row-level security: that tenant's rows only."""
    import contextlib

    import psycopg

    from compliance.consent import consent_state
    from compliance.erase import check_ids
    from compliance.requests import close_request, open_request
    from compliance.stores import RedisOnline, lead_tables
    from compliance.tenants import tenant_reads
    from compliance.tokens import Tokenizer

    (lead_id,) = check_ids([lead_id])
    token = Tokenizer(settings)(lead_id)
    stores: dict[str, list[dict]] = {}
    with psycopg.connect(settings.pg_dsn(role=ROLE)) as conn:
        tables = lead_tables(conn)
        with tenant_reads(conn, tenant) if tenant is not None else contextlib.nullcontext():
            for table in tables:
                schema, name = table.split(".", 1)
                cur = conn.execute(f'SELECT * FROM "{schema}"."{name}" WHERE lead_id = %s', (lead_id,))
                names = [d.name for d in cur.description]
                rows = [{k: _plain(v) for k, v in zip(names, row, strict=True)} for row in cur.fetchall()]
                if rows:
                    stores[table] = rows
        scores = [dict(zip(["at", "endpoint", "tenant", "broker", "key_id", "model_name", "model_version",
                            "feature_service", "score", "tier"], map(_plain, row), strict=True))
                  for row in conn.execute(SCORES, (lead_id,)).fetchall()]
        models = [{"model": m, "run_id": r} for m, r in conn.execute(
            "SELECT model_name, run_id FROM compliance.lineage WHERE lead_token = %s ORDER BY 1, 2", (token,))]
    online = RedisOnline(settings)
    try:
        in_online = online.count([lead_id]) > 0
    finally:
        online.close()
    shared: dict[tuple, dict] = {}
    for s in scores:
        entry = shared.setdefault((s["tenant"], s["broker"]), {"tenant": s["tenant"], "broker": s["broker"],
                                                                "scores": 0, "first": s["at"], "last": s["at"]})
        entry["scores"] += 1
        entry["last"] = s["at"]
    held = bool(stores or in_online or models)
    export = {
        "lead_id": lead_id, "exported_at": datetime.now().astimezone().isoformat(), "held": held,
        "consent": consent_state(settings, lead_id, tenant),
        "scores": scores,
        "shared_with": list(shared.values()),
        "models_trained_on_it": models,
        "online": in_online,
        "stores": stores,
        "note": "hashed fields are shown as stored: the product keeps only their keyed hash"
                if held else "nothing is held about this lead id",
    }
    request_id = open_request(settings, "access", lead_id, channel, {"requested_by": requested_by})
    with psycopg.connect(settings.pg_dsn(role=ROLE)) as conn:
        close_request(conn, request_id, "done", {"tables": sorted(stores), "held": held})
        conn.execute("INSERT INTO compliance.audit_log (actor, action, lead_id, detail) VALUES (%s, 'export', %s, %s)",
                     (requested_by, lead_id, json.dumps({"request_id": request_id, "channel": channel,
                                                         "held": held})))
    export["request_id"] = request_id
    return export
