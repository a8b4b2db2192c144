"""The BentoML scoring service: `bentoml serve serving.service:LeadScorer` (what `leadscore serve` runs).

POST /score, POST /rank, POST /admin/reload; GET /healthz, /readyz, /metrics and the OpenAPI page come from
BentoML (/readyz asks `__is_ready__`: model loaded, Redis and Postgres answering). Every scoring call needs an API
key (`Authorization: Bearer ls_...` or `X-API-Key`), is rate limited per key, and is written to
serving.prediction_log in batches. Errors are JSON bodies naming the field or dependency, never a stack trace.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

import bentoml
import prometheus_client  # noqa: F401 - before Feast, which would switch it to its own multiprocess directory

from serving.console.app import console
from serving.middleware import ApiGuard, label_routes_only
from serving.privacy_api import privacy_api
from serving.schemas import RankRequest, RankResponse, ReloadResponse, ScoreRequest, ScoreResponse

log = logging.getLogger("leadscore.serving")
Reply = tuple[int, dict, dict[str, str]]  # HTTP status, JSON body, extra headers
WORKERS = int(os.environ.get("LEADSCORE_SERVING_WORKERS", "1"))  # processes; each loads the model
ACCESS_LOG = os.environ.get("LEADSCORE_ACCESS_LOG", "0") == "1"
# OpenTelemetry spans for /score and /rank cost more than their model work on this path, so they are off unless
# asked for (LEADSCORE_TRACE_SCORING=1); the endpoints keep their Prometheus histograms (docs/serving.md)
TRACED = os.environ.get("LEADSCORE_TRACE_SCORING", "0") == "1"


@bentoml.service(name="leadscore", workers=WORKERS, traffic={"timeout": 60},
                 logging={"access": {"enabled": ACCESS_LOG}},
                 tracing={"excluded_urls": [] if TRACED else ["/score", "/rank"]})
@bentoml.asgi_app(privacy_api, path="/")  # /consent and /privacy/* (serving/privacy_api.py)
@bentoml.asgi_app(console, path="/console")  # the console's pages (serving/console): mounted before "/"
class LeadScorer:
    """Scores and ranks brokers' leads with the @champion ensemble, explains each score, re-ranks by message text."""

    def __init__(self) -> None:
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        from infra.config import Settings

        settings = Settings.load()
        os.environ.update(settings.mlflow_env("serving"))  # the registry's read-only user
        import torch

        torch.set_num_threads(1)  # one model thread per worker: OpenMP spinning across workers costs more
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)  # numpy's BLAS too: its spinning threads took the cores the boosters' threads need
        from serving.batcher import MicroBatcher
        from serving.engine import Engine

        self.engine = Engine(settings, workers=WORKERS)
        from serving.tokens import TokenVerifier

        self.tokens = TokenVerifier(settings)
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="leadscore-model")
        # /score batches run on the event loop (no thread hand-off, no GIL contention with it: measured faster at
        # concurrency 8 and 32, docs/serving.md); LEADSCORE_SCORE_INLINE=0 moves them to the model thread
        inline = os.environ.get("LEADSCORE_SCORE_INLINE", "1") == "1"
        self.batcher = MicroBatcher(self._score_batch, None if inline else self.executor)
        from serving import middleware
        from serving.privacy_api import attach

        attach(self, settings)
        from serving.console.app import attach as attach_console

        attach_console(self, settings)
        middleware.attach(self, settings.secret("metrics_token", create=True))
        if os.environ.get("LEADSCORE_FAST_HTTP", "1") == "1":
            from serving.middleware import serve_fast

            serve_fast(self)

    def _score_batch(self, batch: list) -> list:
        return self.engine.score_batch([b[0] for b in batch], [b[1] for b in batch], [b[2] for b in batch])

    # --- the request handlers, shared by the fast path (serving.middleware) and the BentoML endpoints ---
    def _done(self, endpoint: str, status: int, body: dict, started: float,
              headers: dict[str, str] | None = None) -> Reply:
        from serving.metrics import metrics

        m = metrics()
        m.latency.labels(endpoint).observe(time.perf_counter() - started)
        if status >= 400:
            m.errors.labels(endpoint, str(status)).inc()
        return status, body, headers or {}

    async def _authorize(self, headers: Mapping[str, str], endpoint: str, started: float,  # noqa: ANN202
                         scope: str = "score", cost: int = 1):
        """(ApiKey, None) when the key is valid, holds `scope` and is within its rate for a call of `cost` leads,
        else (None, the error reply)."""
        from serving.db import Unavailable

        token = headers.get("x-api-key") or ""
        auth = headers.get("authorization") or ""
        if not token and auth.lower().startswith("bearer "):
            token = auth[7:].strip()
        if not token:
            return None, self._done(endpoint, 401, {"error": "missing API key", "reason": "send 'Authorization: "
                                    "Bearer <key>' (create one: leadscore serve keys create)"},
                                    started, {"WWW-Authenticate": "Bearer"})
        from serving.tokens import looks_like_jwt

        known, key = self.engine.keys.cached(token)  # the usual case: no thread hop, no query
        if not known and looks_like_jwt(token):  # a person's signed token (serving/tokens.py): no query at all
            known, key = True, self.tokens.verify(token)
        if not known:
            try:
                key = await asyncio.get_running_loop().run_in_executor(None, self.engine.keys.verify, token)
            except Unavailable as exc:
                return None, self._unavailable(endpoint, exc, started)
        if key is None:
            return None, self._done(endpoint, 401, {"error": "invalid API key",
                                                    "reason": "unknown, malformed, revoked or expired key or token"},
                                    started, {"WWW-Authenticate": "Bearer"})
        if not key.may(scope):
            return None, self._done(endpoint, 403, {"error": "forbidden", "reason": f"key {key.key_id} lacks the "
                                                    f"'{scope}' scope (leadscore serve keys create --scope {scope})"},
                                    started)
        wait = self.engine.limiter.allow(key, cost)
        if wait > 0:
            return None, self._done(endpoint, 429, {"error": "rate limit exceeded", "reason":
                                    f"key {key.key_id} allows {key.rate_per_s:g} leads/s (burst {key.burst})"},
                                    started,
                                    {"Retry-After": str(max(1, round(wait)))})
        return key, None

    def _unavailable(self, endpoint: str, exc: Exception, started: float) -> Reply:
        dependency = getattr(exc, "dependency", "dependency")
        return self._done(endpoint, 503, {"error": f"{dependency} unavailable", "dependency": dependency,
                                          "reason": str(exc)}, started, {"Retry-After": "1"})

    def _invalid(self, endpoint: str, exc: Exception, started: float) -> Reply:
        """422 naming each bad inline field and why (the first 100)."""
        errors = [{"field": f, "reason": r} for f, r in exc.errors[:100]]
        return self._done(endpoint, 422, {"error": "invalid request", "errors": errors}, started)

    async def handle_score(self, request: ScoreRequest, headers: Mapping[str, str]) -> Reply:
        """Score one lead: online features plus inline overrides, calibrated score, tier and explanation."""
        from serving.db import Unavailable
        from serving.engine import Item
        from serving.features import FeatureError

        started = time.perf_counter()
        key, denied = await self._authorize(headers, "score", started)
        if denied is not None:
            return denied
        item = Item.asked(key, request.lead_id, request.features, request.messages)
        try:
            self.engine.check_inline([item], indexed=False)
            status, body = await self.batcher.submit((item, request.top_k, request.explain))
        except FeatureError as exc:
            return self._invalid("score", exc, started)
        except Unavailable as exc:
            return self._unavailable("score", exc, started)
        return self._done("score", status, body, started)

    async def handle_rank(self, request: RankRequest, headers: Mapping[str, str]) -> Reply:
        """Rank up to 10,000 leads best first, in one model call, re-ranked by message text when fitted."""
        from serving.db import Unavailable
        from serving.engine import Item, new_request_id
        from serving.features import FeatureError

        started = time.perf_counter()
        # a lead sent twice is answered once, if its copies are the same; copies that differ are refused
        first: dict[str, int] = {}
        conflicts = [(f"leads[{i}].lead_id", f"{lead.lead_id!r} is also leads[{first[lead.lead_id]}] with other "
                                             "features or messages: send each lead once per call")
                     for i, lead in enumerate(request.leads)
                     if first.setdefault(lead.lead_id, i) != i and lead != request.leads[first[lead.lead_id]]]
        unique = [request.leads[i] for i in first.values()]
        key, denied = await self._authorize(headers, "rank", started, cost=len(unique))
        if denied is not None:
            return denied
        if conflicts:  # each copy is valid alone (no schema can say "unique by lead_id"): a conflict, not a 422
            return self._done("rank", 409, {"error": "conflicting copies of a lead", "errors": [
                {"field": f, "reason": r} for f, r in conflicts[:100]]}, started)
        request_id = new_request_id()  # one call, one request id for all its leads
        items = [Item.asked(key, lead.lead_id, lead.features, lead.messages, request_id) for lead in unique]
        try:
            self.engine.check_inline(items, indexed=True)
            body = await asyncio.get_running_loop().run_in_executor(self.executor, self.engine.rank, items,
                                                                    request.rerank, request.limit)
        except FeatureError as exc:
            return self._invalid("rank", exc, started)
        except Unavailable as exc:
            return self._unavailable("rank", exc, started)
        return self._done("rank", 200, body, started)

    @staticmethod
    def _respond(ctx: bentoml.Context, reply: Reply):  # noqa: ANN205 - starlette JSONResponse
        from starlette.responses import JSONResponse

        status, body, headers = reply
        ctx.response.status_code = status
        return JSONResponse(body, status_code=status, headers=headers)

    # --- endpoints (the fast path answers /score and /rank before BentoML's routing; these serve the OpenAPI
    # page, and the requests themselves when LEADSCORE_FAST_HTTP=0) ---
    @bentoml.api(route="/score")
    async def score(self, request: ScoreRequest, /, ctx: bentoml.Context) -> ScoreResponse:
        """Score one lead: online features plus inline overrides, calibrated score, tier and explanation."""
        return self._respond(ctx, await self.handle_score(request, ctx.request.headers))

    @bentoml.api(route="/rank")
    async def rank(self, request: RankRequest, /, ctx: bentoml.Context) -> RankResponse:
        """Rank up to 10,000 leads best first, in one model call, re-ranked by message text when fitted."""
        return self._respond(ctx, await self.handle_rank(request, ctx.request.headers))

    @bentoml.api(route="/admin/reload")
    async def reload(self, ctx: bentoml.Context) -> ReloadResponse:
        """Check the registry now and load the version @champion points to (an admin-tenant key is required)."""
        return self._respond(ctx, await self.handle_reload(ctx.request.headers))

    async def handle_reload(self, headers: Mapping[str, str]) -> Reply:
        started = time.perf_counter()
        key, denied = await self._authorize(headers, "reload", started)
        if denied is not None:
            return denied
        if key.tenant != "admin":
            return self._done("reload", 403, {"error": "forbidden", "reason": "reload needs a key of tenant 'admin'"},
                              started)
        loop = asyncio.get_running_loop()
        try:
            changed = await loop.run_in_executor(self.executor, self.engine.watcher.refresh)
        except Exception as exc:  # noqa: BLE001 - the old model keeps serving; say why
            return self._done("reload", 503, {"error": "reload failed", "dependency": "mlflow",
                                              "reason": f"{type(exc).__name__}: {exc}"}, started)
        await loop.run_in_executor(self.executor, self.engine.reranker.refresh, None)
        served = self.engine.served
        return self._done("reload", 200, {"model_version": served.model.version if served else None,
                                          "changed": changed}, started)

    def __is_ready__(self) -> bool:
        checks = self.engine.readiness()
        if not checks["ready"]:
            log.warning("not ready: %s", checks)
        return checks["ready"]

    @bentoml.on_shutdown
    def close(self) -> None:
        self.engine.close()


label_routes_only()
LeadScorer.add_asgi_middleware(ApiGuard, max_body=int(os.environ.get("LEADSCORE_SERVING_MAX_BODY", 16 * 1024 * 1024)))
