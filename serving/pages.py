"""GET routes the scoring service answers itself: the docs page and its script, /docs.json and /metrics.

/metrics asks for the metrics token (`secrets/metrics_token` in the state directory, 0600; Prometheus reads a copy
in its own folder): without it, 401. The OpenAPI document is built once per served model version.
"""

from __future__ import annotations

import asyncio
import hmac
from typing import Any

from serving.openapi import INDEX_CSP, INDEX_HTML, INIT_JS, document

_docs: dict[str, Any] = {}


def _bearer(headers: dict[bytes, bytes]) -> str:
    auth = headers.get(b"authorization", b"").decode("latin-1")
    return auth[7:].strip() if auth.lower().startswith("bearer ") else ""


def openapi(service: Any) -> dict[str, Any]:  # noqa: ANN401 - serving.service.LeadScorer
    """The document for the model served now (cached per version)."""
    from importlib.metadata import version

    from serving.service import LeadScorer

    served = service.engine.served
    key = served.model.version if served is not None else None
    if _docs.get("key") != key or "doc" not in _docs:
        _docs["doc"] = document(LeadScorer.openapi_spec.asdict(), served.rules if served is not None else None,
                                version("leadscore"))
        _docs["key"] = key
    return _docs["doc"]


async def own_get(state: dict[str, Any], path: str, headers: dict[bytes, bytes], send, head: bool = False) -> None:  # noqa: ANN001
    """Answer one of serving.middleware.OWN_GETS."""
    from serving.middleware import send_bytes, send_json

    if path == "/metrics":
        token = state.get("metrics_token") or ""
        if not token or not hmac.compare_digest(_bearer(headers).encode(), token.encode()):
            return await send_json(send, 401, {"error": "missing or wrong metrics token", "reason": "send "
                                   "'Authorization: Bearer <the state directory's secrets/metrics_token>'"},
                                   {"WWW-Authenticate": "Bearer"})
        from prometheus_client import CONTENT_TYPE_LATEST

        from serving.metrics import exposition

        return await send_bytes(send, 200, await asyncio.to_thread(exposition), CONTENT_TYPE_LATEST, head=head)
    if path == "/docs.json":
        import msgspec

        return await send_bytes(send, 200, msgspec.json.encode(openapi(state["service"])), "application/json",
                                head=head)
    if path == "/docs-init.js":
        return await send_bytes(send, 200, INIT_JS.encode(), "text/javascript; charset=utf-8", head=head)
    return await send_bytes(send, 200, INDEX_HTML.encode(), "text/html; charset=utf-8",
                            {"Content-Security-Policy": INDEX_CSP, "X-Frame-Options": "DENY"}, head=head)
