"""The privacy officer's page: open rights requests with their due dates, a lead's export and erasure with the
signed receipt, and the consent ledger's verification (compliance/ does the work, as for the CLI and the API).

Requests are read as the console's role under the tenant's row-level security. Export and erasure act on the
officer's tenant's lead of the given id (a lead of another tenant is one this tenant does not hold), recorded and
audited as done by `console:<subject>` over the channel `console`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from compliance.tenants import namespace, split_id, stored_id, tenant_reads
from serving.db import Db


def open_requests(db: Db, tenant: str) -> list[dict[str, Any]]:
    """The tenant's open and queued requests, the soonest due first, with the days left (negative: overdue)."""
    with db.conn() as conn, tenant_reads(conn, tenant):
        rows = conn.execute("SELECT request_id, kind, lead_id, received_at, due_at, status, channel FROM "
                            "compliance.requests WHERE status IN ('open', 'queued') ORDER BY due_at, request_id "
                            "LIMIT 500").fetchall()
    now = datetime.now(UTC)
    return [{"request_id": r, "kind": k, "lead_id": split_id(lead)[1] if lead else "", "received_at": got,
             "due_at": due, "status": st, "channel": ch, "days_left": (due - now).total_seconds() / 86400}
            for r, k, lead, got, due, st, ch in rows]


def export(settings: Any, tenant: str, lead_id: str, subject: str) -> dict[str, Any]:  # noqa: ANN401 - Settings
    """Everything held about the tenant's lead, as the API's export gives it."""
    from compliance.export import export_lead
    from serving.privacy_api import _as_asked

    stored = stored_id(tenant, lead_id)
    return _as_asked(export_lead(settings, stored, f"console:{subject}", "console", namespace(tenant)), stored,
                     lead_id)


def erase(settings: Any, tenant: str, lead_id: str, subject: str) -> dict[str, Any]:  # noqa: ANN401
    """Erase the tenant's lead from every store; the receipt, its signature and the time it took."""
    from compliance.erase import erase as erase_leads

    done = erase_leads(settings, [stored_id(tenant, lead_id)], f"console:{subject}", "console")
    return {"receipt": done.receipt, "signature": done.signature, "seconds": done.seconds}


def verify_ledger(settings: Any) -> dict[str, Any]:  # noqa: ANN401
    """The consent ledger's chain re-derived and checked against its signed head."""
    import time

    from compliance.ledger import verify

    started = time.monotonic()
    found = verify(settings)
    return {"ok": found.ok, "entries": found.entries, "problems": len(found.problems), "unbacked": found.unbacked,
            "seconds": time.monotonic() - started, "at": datetime.now(UTC)}


# --- routes: /console/privacy (GET), /console/privacy/export, /erase, /verify-ledger (POST, form token required);
# they use serving.console.app's page helpers, imported in each (that module includes this router) ---
router = APIRouter(include_in_schema=False)  # pages, not API: outside the service's OpenAPI document


async def _officer(request: Request, form: bool = False):  # noqa: ANN202 - (Session, form data or None)
    from serving.console.app import Problem, same, signed_in

    session = await signed_in(request)
    if session.role != "privacy_officer":
        raise Problem(403, "Not for this role", "The privacy pages are for privacy officers; you are signed in as "
                                                f"{session.role.replace('_', ' ')}.")
    if not form:
        return session, None
    data = await request.form()
    if not same(data.get("csrf_token"), session.csrf):
        raise Problem(403, "Form refused", "This form did not carry its form token: reload the page and try again.")
    return session, data


def _lead(data: Any) -> str:  # noqa: ANN401 - form data
    from serving.console.app import Problem, is_lead_id

    lead = str(data.get("lead_id") or "").strip()
    if not is_lead_id(lead):
        raise Problem(422, "Not a lead id", f"lead id {lead[:60]!r}: 1-200 characters, no control characters and no "
                                            "'/' are needed.")
    return lead


async def _page(request: Request, session: Any, **done: Any) -> Response:  # noqa: ANN401
    from serving.console.app import _or_line, _state, page

    requests, requests_error = await _or_line("PostgreSQL", open_requests, _state["db"], session.tenant)
    return page(request, "privacy.html", session=session, requests=requests, requests_error=requests_error, **done)


@router.get("/privacy")
async def privacy(request: Request) -> Response:
    session, _ = await _officer(request)
    return await _page(request, session)


@router.post("/privacy/export")
async def export_page(request: Request) -> Response:
    import json

    from serving.console.app import _blocking, _state

    session, data = await _officer(request, form=True)
    lead = _lead(data)
    held = await _blocking(export, _state["settings"], session.tenant, lead, session.subject)
    text = json.dumps(held, indent=2, default=str, ensure_ascii=False)
    return await _page(request, session, exported={"lead_id": lead, "json": text})


@router.post("/privacy/erase")
async def erase_page(request: Request) -> Response:
    from serving.console.app import Problem, _blocking, _state

    session, data = await _officer(request, form=True)
    lead = _lead(data)
    if data.get("confirm") != "yes":
        raise Problem(422, "Not confirmed", "Erasure removes the lead from every store for good: tick the box that "
                                            "confirms it and send the form again.")
    receipt = await _blocking(erase, _state["settings"], session.tenant, lead, session.subject)
    return await _page(request, session, erased={"lead_id": lead, **receipt})


@router.post("/privacy/verify-ledger")
async def verify_page(request: Request) -> Response:
    from serving.console.app import _blocking, _state

    session, _ = await _officer(request, form=True)
    return await _page(request, session, verified=await _blocking(verify_ledger, _state["settings"]))
