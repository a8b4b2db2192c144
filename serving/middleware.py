"""ASGI middleware for the scoring API: refuse oversize bodies (413) and turn validation errors into a clear body.

BentoML answers a request that fails pydantic validation with 400 and pydantic's error list. Clients get instead
    422 {"error": "invalid request", "errors": [{"field": "leads[3].lead_id", "reason": "String should have ..."}]}
(400 with the same shape when the body is not JSON at all).
"""

from __future__ import annotations

import json
from typing import Any

API_PATHS = ("/score", "/rank", "/admin/reload")


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
        if scope["type"] != "http" or scope.get("path") not in API_PATHS:
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            return await self._too_large(send, int(length))
        if length is None:  # chunked: read it all (bounded) and replay it
            body, more = b"", True
            while more:
                message = await receive()
                body += message.get("body", b"")
                more = message.get("more_body", False)
                if len(body) > self.max_body:
                    return await self._too_large(send, len(body))
            replayed = False

            async def receive() -> dict:  # noqa: F811 - the replayed body replaces the consumed stream
                nonlocal replayed
                if replayed:
                    return {"type": "http.disconnect"}
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}

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

    async def _too_large(self, send, size: int) -> None:  # noqa: ANN001
        data = json.dumps({"error": "request body too large", "errors": [
            {"field": "(body)", "reason": f"{size} bytes is over the limit of {self.max_body} bytes "
                                          "(LEADSCORE_SERVING_MAX_BODY)"}]}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": data})
