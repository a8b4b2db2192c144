"""ASGI middleware for the scoring API: oversize bodies (413), clear validation errors, the fast path, and the
edges an attacker probes first.

BentoML answers a request that fails pydantic validation with 400 and pydantic's error list. Clients get instead
    422 {"error": "invalid request", "errors": [{"field": "leads[3].lead_id", "reason": "String should have ..."}]}
(400 with the same shape when the body is not JSON at all).

The fast path: POST /score and /rank are answered here, inside BentoML's outer middleware (its request metrics,
timeout and error handling) but before its routing, request context and IO descriptors, which took about a
quarter of the worker's CPU per /score, second only to the model (docs/serving.md). The same pydantic models
validate the body and the same service methods (`handle_score`, `handle_rank`) answer it, so both paths give the
same replies (tested); LEADSCORE_FAST_HTTP=0 sends every request through BentoML's own path.

Always answered here: POST /admin/reload (it takes no body: a multipart or any other body is ignored, never a 500),
GET /metrics (only with the metrics token: `Authorization: Bearer <secrets/metrics_token>`), and the docs page, its
script and /docs.json (serving/openapi.py: nothing loaded from outside the machine, the security scheme and every
status declared). BentoML's request metrics label each request by its path, so every unknown path (and every lead
id in /consent/{lead_id}) would become a series of its own: `label_routes_only()` makes them label known routes
only ('(other)' for the rest) while the request itself keeps its path.
"""

from __future__ import annotations

import json
import logging
from typing import Any

API_PATHS = ("/score", "/rank", "/admin/reload")
FAST_PATHS = ("/score", "/rank")
OWN_GETS = ("/", "/docs-init.js", "/docs.json", "/metrics")
ROUTES = {"/score", "/rank", "/admin/reload", "/consent", "/privacy/erasure", "/healthz", "/livez", "/readyz",
          "/metrics", "/", "/docs.json", "/docs-init.js", "/console", "/console/", "/console/sign-in",
          "/console/sign-out", "/console/leads"}
TEMPLATES = (("/consent/", "/consent/{lead_id}"), ("/privacy/export/", "/privacy/export/{lead_id}"),
             ("/static_content/", "/static_content/{file}"), ("/console/leads/", "/console/leads/{lead_id}"),
             ("/console/static/", "/console/static/{file}"), ("/console/", "/console/(other)"))
REAL_PATH = "leadscore.path"
log = logging.getLogger("leadscore.serving")
_state: dict[str, Any] = {}  # this worker's service, metrics token and whether it answers the fast path


def serve_fast(service: Any) -> None:  # noqa: ANN401 - serving.service.LeadScorer (imports this module)
    """Answer /score and /rank in this process from `service.handle_score` / `handle_rank`."""
    _state["fast"] = True
    _state["service"] = service


def attach(service: Any, metrics_token: str) -> None:  # noqa: ANN401
    """The service answering /admin/reload and /docs.json here, and the token /metrics asks for."""
    _state["service"], _state["metrics_token"] = service, metrics_token


def route_label(path: str) -> str:
    """The route a path belongs to, as a metrics label: lead ids and unknown paths never become series."""
    if path in ROUTES:
        return path
    for prefix, template in TEMPLATES:
        if path.startswith(prefix):
            return template
    return "(other)"


def label_routes_only() -> None:
    """Make BentoML's request metrics label by `route_label` (the inner app still sees the real path)."""
    from bentoml._internal.server.http.instruments import RunnerTrafficMetricsMiddleware as Metrics

    if getattr(Metrics, "_leadscore_routes", False):
        return
    original = Metrics.__call__

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001, N807
        path = scope.get("path")
        if scope.get("type") == "http" and isinstance(path, str) and route_label(path) != path:
            scope = {**scope, "path": route_label(path), REAL_PATH: path}  # ApiGuard puts the path back
        return await original(self, scope, receive, send)

    Metrics.__call__ = __call__
    Metrics._leadscore_routes = True


def field_path(loc: list[Any] | tuple[Any, ...]) -> str:
    """pydantic's loc ('leads', 3, 'lead_id') as 'leads[3].lead_id'; '(body)' for the whole body."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part not in ("body", "root"):
            out += f".{part}" if out else str(part)
    return out or "(body)"


def reshape(payload: dict) -> tuple[int, dict]:
    """(status, body) for BentoML's validation error payload."""
    errors = [{"field": field_path(e.get("loc", ())), "reason": e.get("msg", "invalid")}
              for e in payload.get("detail", []) if isinstance(e, dict)]
    if any(e.get("type") == "json_invalid" for e in payload.get("detail", []) if isinstance(e, dict)):
        return 400, {"error": "the body is not valid JSON", "errors": errors}
    return 422, {"error": "invalid request", "errors": errors}


class ApiGuard:
    """413 for bodies over `max_body` bytes; reshaped validation errors on the API paths."""

    def __init__(self, app, max_body: int = 16 * 1024 * 1024) -> None:  # noqa: ANN001 - ASGI app
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if REAL_PATH in scope:
            scope = {**scope, "path": scope[REAL_PATH]}
            scope.pop(REAL_PATH)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            return await self._too_large(send, int(length))
        path, method = scope.get("path"), scope.get("method")
        if method in ("GET", "HEAD") and path in OWN_GETS and "service" in _state:
            from serving.pages import own_get

            return await own_get(_state, path, headers, send, head=method == "HEAD")
        if path == "/admin/reload" and method == "POST" and "service" in _state:
            return await self._reload(_state["service"], scope, receive, send)
        service = _state.get("service") if _state.get("fast") and method == "POST" and path in FAST_PATHS else None
        chunked = length is None and method in ("POST", "PUT", "PATCH")  # no Content-Length to refuse early
        if path not in API_PATHS and not chunked:  # /consent, /privacy/* (FastAPI shapes their errors), BentoML's
            return await self.app(scope, receive, send)
        if service is not None or length is None:  # read it all (bounded), on every path
            body, more = b"", True
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return None
                body += message.get("body", b"")
                more = message.get("more_body", False)
                if len(body) > self.max_body:
                    return await self._too_large(send, len(body))
            if service is not None:
                return await self._fast(service, scope, body, send)
            replayed = False

            async def receive() -> dict:  # noqa: F811 - the replayed body replaces the consumed stream
                nonlocal replayed
                if replayed:
                    return {"type": "http.disconnect"}
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}

            if path not in API_PATHS:
                return await self.app(scope, receive, send)

        start: dict = {}

        async def guarded_send(message: dict) -> None:
            if message["type"] == "http.response.start":
                if message["status"] == 400:
                    start.update(message)
                    return
                return await send(message)
            if start and message["type"] == "http.response.body":
                try:
                    status, payload = reshape(json.loads(message.get("body", b"") or b"{}"))
                except (ValueError, AttributeError):
                    status, payload = 400, {"error": "bad request"}
                data = json.dumps(payload).encode()
                await send({"type": "http.response.start", "status": status,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"content-length", str(len(data)).encode())]})
                return await send({"type": "http.response.body", "body": data})
            return await send(message)

        return await self.app(scope, receive, guarded_send)

    async def _fast(self, service, scope: dict, body: bytes, send) -> None:  # noqa: ANN001
        """Validate with the endpoint's pydantic model and answer from the service's handler."""
        from pydantic import ValidationError

        from serving.schemas import RankRequest, ScoreRequest

        score = scope["path"] == "/score"
        try:
            request = (ScoreRequest if score else RankRequest).model_validate_json(body)
        except ValidationError as exc:
            status, payload = reshape({"detail": exc.errors(include_url=False, include_input=False,
                                                            include_context=False)})
            return await send_json(send, status, payload)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers") or ()
                   if k in (b"authorization", b"x-api-key")}
        try:
            status, payload, extra = await (service.handle_score if score else service.handle_rank)(request, headers)
        except Exception:  # noqa: BLE001 - logged here; the client gets a clear 500, never the trace
            log.exception("%s failed", scope["path"])
            status, payload, extra = 500, {"error": "internal error", "reason": "see the service log"}, {}
        return await send_json(send, status, payload, extra)

    async def _reload(self, service, scope: dict, receive, send) -> None:  # noqa: ANN001
        """POST /admin/reload: the body (if any) is read and ignored; the key decides."""
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            more = message.get("more_body", False)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers") or ()
                   if k in (b"authorization", b"x-api-key")}
        try:
            status, payload, extra = await service.handle_reload(headers)
        except Exception:  # noqa: BLE001 - logged here; the client gets a clear 500, never the trace
            log.exception("/admin/reload failed")
            status, payload, extra = 500, {"error": "internal error", "reason": "see the service log"}, {}
        return await send_json(send, status, payload, extra)

    async def _too_large(self, send, size: int) -> None:  # noqa: ANN001
        data = json.dumps({"error": "request body too large", "errors": [
            {"field": "(body)", "reason": f"{size} bytes is over the limit of {self.max_body} bytes "
                                          "(LEADSCORE_SERVING_MAX_BODY)"}]}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": data})


async def send_json(send, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:  # noqa: ANN001
    """One JSON response (msgspec: the same compact UTF-8 JSON as Starlette's JSONResponse, several times faster)."""
    import msgspec

    data = msgspec.json.encode(payload)
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
           (b"server", b"BentoML Service/leadscore")]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": data})


async def send_bytes(send, status: int, data: bytes, content_type: str,  # noqa: ANN001
                     headers: dict[str, str] | None = None, head: bool = False) -> None:
    """One response of `data` (no body for HEAD)."""
    raw = [(b"content-type", content_type.encode()), (b"content-length", str(len(data)).encode()),
           (b"x-content-type-options", b"nosniff")]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": b"" if head else data})
