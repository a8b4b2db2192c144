"""The data principal's rights over HTTP, mounted on the scoring service (compliance/ does the work).

    POST /consent                   (scope consent)  grant or withdraw a purpose for up to 10,000 leads
    GET  /consent/{lead_id}         (scope consent)  the lead's consent per purpose and its ledger history
    POST /privacy/erasure           (scope privacy)  erase up to 10,000 leads; the signed receipt
    GET  /privacy/export/{lead_id}  (scope privacy)  everything held about the lead

Keys are checked by the scoring service's verifier (serving/keys.py: tenant 'admin' holds every scope). Errors are
JSON naming the field and the reason: 401 (key), 403 (scope), 422 (a bad field: an unknown purpose, channel or
notice version), 503 (a store unreachable).
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from compliance.tenants import namespace, split_id
from serving.schemas import LeadId

log = logging.getLogger("leadscore.serving")
privacy_api = FastAPI(title="LeadScore privacy", version="1", openapi_url=None, docs_url=None, redoc_url=None)
_state: dict[str, Any] = {}
MAX_LEADS = 10_000
PathLeadId = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:@-]+$",
                                 description="the CRM's lead id")]


def attach(service: Any, settings: Any) -> None:  # noqa: ANN401 - serving.service.LeadScorer, Settings
    """Answer with this worker's service (its key verifier and rate limiter) and settings."""
    _state["service"], _state["settings"] = service, settings


class ConsentChange(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [
        {"lead_ids": ["L-1001"], "purpose": "scoring", "granted": False, "channel": "consent_manager"}]})
    lead_ids: list[LeadId] = Field(min_length=1, max_length=MAX_LEADS, description="the leads the change is for")
    purpose: Literal["scoring", "marketing_contact", "text_analysis"]
    granted: bool
    notice_version: str | None = Field(None, max_length=64,
                                       description="the notice consented to (default: the newest)")
    channel: str = Field("api", max_length=64,
                         description="how it was given or withdrawn: api, consent_manager, web_form, ...")
    expires_at: Annotated[datetime, Field(strict=False)] | None = Field(
        None, description="ISO 8601 date-time with its time zone")


class ConsentChanged(BaseModel):
    leads: int
    purpose: str
    granted: bool
    notice_version: str
    ledger_seq: int
    effects: dict[str, int]
    erasures_queued: list[str]


class ErasureRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [{"lead_ids": ["L-1001"]}]})
    lead_ids: list[LeadId] = Field(min_length=1, max_length=MAX_LEADS)


class ErasureReceipt(BaseModel):
    receipt: dict
    signature: str
    seconds: float


def _error(status: int, error: str, reason: str, field: str | None = None,
           headers: dict[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": error, "reason": reason}
    if field is not None:
        body = {"error": error, "errors": [{"field": field, "reason": reason}]}
    return JSONResponse(body, status_code=status, headers=headers)


@privacy_api.exception_handler(StarletteHTTPException)
async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """FastAPI's own refusals (a body it cannot parse, an unknown route or method) in the API's error shape."""
    error = "the body is not valid JSON" if exc.status_code == 400 else str(exc.detail)
    return _error(exc.status_code, error, str(exc.detail), headers=getattr(exc, "headers", None))


@privacy_api.exception_handler(RequestValidationError)
async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
    from serving.middleware import field_path

    errors = [{"field": field_path(e.get("loc", ())), "reason": e.get("msg", "invalid")} for e in exc.errors()]
    if any(e.get("type") == "json_invalid" for e in exc.errors()):
        return JSONResponse({"error": "the body is not valid JSON", "errors": errors}, status_code=400)
    return JSONResponse({"error": "invalid request", "errors": errors[:100]}, status_code=422)


async def _run(request: Request, endpoint: str, scope: str, work, cost: int = 1) -> JSONResponse:  # noqa: ANN001
    """Authorize (a call costs its leads against the key's rate), then run `work(settings, key)` in a thread; map
    its errors to replies."""
    from compliance.erase import PrivacyError

    service, settings = _state.get("service"), _state.get("settings")
    if service is None:
        return _error(503, "starting", "the service is still loading")
    started = time.perf_counter()
    key, denied = await service._authorize(request.headers, endpoint, started, scope, cost)
    if denied is not None:
        status, body, headers = denied
        return JSONResponse(body, status_code=status, headers=headers)
    try:
        result = await asyncio.get_running_loop().run_in_executor(None, work, settings, key)
    except PrivacyError as exc:
        field, _, reason = str(exc).partition(": ")
        return _error(422, "invalid request", reason or field, field if reason else "(body)")
    except Exception as exc:  # noqa: BLE001 - a store down: say which, never a trace
        log.exception("%s failed", endpoint)
        return _error(503, "a store is unavailable", f"{type(exc).__name__}: {str(exc)[:200]}",
                      headers={"Retry-After": "5"})
    service._done(endpoint, 200, {}, started)
    return JSONResponse(result)


def _stored(key, lead_ids: list[str]) -> list[str]:  # noqa: ANN001 - serving.keys.ApiKey
    """The caller's tenant's leads of these ids, as the stores key them (compliance/tenants.py): a lead of another
    tenant is one this tenant does not hold, answered as a lead never seen."""
    from compliance.tenants import stored_id

    return [stored_id(key.tenant, lead) for lead in lead_ids]


def _as_asked(value: Any, stored: str, lead_id: str) -> Any:
    """`value` with the stored id (`tenant/id`) shown as the caller named the lead, at any depth."""
    if isinstance(value, dict):
        return {k: _as_asked(v, stored, lead_id) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_asked(v, stored, lead_id) for v in value]
    return lead_id if value == stored else value


@privacy_api.post("/consent", response_model=ConsentChanged, tags=["privacy"])
async def change_consent(change: ConsentChange, request: Request):  # noqa: ANN201
    """Grant or withdraw one purpose for some leads: ledgered, with effect at once (withdrawal stops scoring)."""
    from dataclasses import asdict

    def work(settings, key):  # noqa: ANN001, ANN202
        from compliance.consent import set_consent

        out = asdict(set_consent(settings, _stored(key, change.lead_ids), change.purpose, change.granted,
                                 change.notice_version, change.channel, f"api_key:{key.key_id}", change.expires_at))
        return out | {"erasures_queued": [split_id(x)[1] for x in out["erasures_queued"]]}

    return await _run(request, "consent", "consent", work, len(change.lead_ids))


@privacy_api.get("/consent/{lead_id}", tags=["privacy"])
async def get_consent(lead_id: PathLeadId, request: Request):  # noqa: ANN201
    """The lead's consent per purpose and every change to it (notice version, channel, who, when)."""
    def work(settings, key):  # noqa: ANN001, ANN202
        from compliance.consent import consent_state

        stored = _stored(key, [lead_id])[0]
        return _as_asked(consent_state(settings, stored, namespace(key.tenant)), stored, lead_id)

    return await _run(request, "consent", "consent", work)


@privacy_api.post("/privacy/erasure", response_model=ErasureReceipt, tags=["privacy"])
async def request_erasure(body: ErasureRequest, request: Request):  # noqa: ANN201
    """Erase leads from every store; the signed receipt says, per store, what was there before and after."""
    def work(settings, key):  # noqa: ANN001, ANN202
        from compliance.erase import erase

        done = erase(settings, _stored(key, body.lead_ids), f"api_key:{key.key_id}", "api")
        return {"receipt": done.receipt, "signature": done.signature, "seconds": done.seconds}

    return await _run(request, "erasure", "privacy", work, len(body.lead_ids))


@privacy_api.get("/privacy/export/{lead_id}", tags=["privacy"])
async def export(lead_id: PathLeadId, request: Request):  # noqa: ANN201
    """Everything held about the lead, from every store (an access request, recorded and audited)."""
    def work(settings, key):  # noqa: ANN001, ANN202
        from compliance.export import export_lead

        stored = _stored(key, [lead_id])[0]
        return _as_asked(export_lead(settings, stored, f"api_key:{key.key_id}", "api", namespace(key.tenant)),
                         stored, lead_id)

    return await _run(request, "export", "privacy", work)
