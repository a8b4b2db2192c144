"""What the brokers' pages show, gathered off the event loop.

The ranked list is what /rank answers for the tenant's most recently active leads that consent to scoring (one
engine call: the champion, the re-ranker when fitted, one prediction-log row per lead), with each lead's one-sentence
explanation from the same model's path attributions; filters apply to what was ranked, so a lead keeps its rank.
The source and city filters use the served model's features of those names (LEADSCORE_CONSOLE_SOURCE_FEATURES,
LEADSCORE_CONSOLE_CITY_FEATURES: the first present is used; none present, no such filter).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

from compliance.tenants import stored_id
from serving.console import data
from serving.console.charts import contributions, history
from serving.console.sessions import Session

_tables: dict[str, list] = {}


def ago(when: datetime | None, now: datetime | None = None) -> str:
    """'12 min ago', '5 h ago', '3 d ago' ('never' for none)."""
    if when is None:
        return "never"
    seconds = max(0.0, ((now or datetime.now(UTC)) - when).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return "just now"


def mine(session: Session) -> str | None:
    """The broker whose leads alone the session sees (a broker's own id; '' for a broker token naming none, which
    matches no lead); None for managers and data scientists, who see the tenant's leads."""
    return (session.broker or "") if session.role == "broker" else None


def _grant(session: Session):  # noqa: ANN202 - serving.keys.ApiKey
    from serving.keys import ApiKey

    return ApiKey(f"console:{session.subject}"[:64], session.tenant, session.broker, 1e9, 10**9, ("score",))


def _feature(state: dict[str, Any], features: list[str], variable: str, default: str) -> str | None:
    names = [n.strip() for n in state["settings"].env.get(variable, default).split(",") if n.strip()]
    return next((n for n in names if n in features), None)


def tables_for(engine: Any, feature_service: str) -> list:  # noqa: ANN401 - serving.engine.Engine
    if feature_service not in _tables:
        _tables[feature_service] = data.feature_tables(engine.store, feature_service)
    return _tables[feature_service]


def _online(served: Any, stored: list[str]) -> list[dict[str, Any]]:  # noqa: ANN401
    import redis

    from serving.db import Unavailable

    try:
        return served.online.read(stored)[0]
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        raise Unavailable("redis", str(exc).splitlines()[0][:200]) from None


async def ranked(state: dict[str, Any], session: Session, chosen: dict[str, str]) -> dict[str, Any]:
    """The ranked list with its filters: rows, filter options, counts and the time it took."""
    from serving.engine import Item, new_request_id

    started = time.perf_counter()
    service = state["service"]
    engine = service.engine
    served = engine.require()
    loop = asyncio.get_running_loop()
    tables = await loop.run_in_executor(None, tables_for, engine, served.model.feature_service)
    recent = await loop.run_in_executor(None, data.recent_leads, state["db"], session.tenant, tables,
                                        state["limit"], mine(session))
    last = {lead: at for lead, at, _ in recent}
    owner = {lead: broker for lead, _, broker in recent}
    grant, request_id = _grant(session), new_request_id()

    def work() -> tuple[dict, list, list]:
        if not recent:
            return {"results": [], "not_found": [], "refused": [], "reranked": False}, [], []
        body = engine.rank([Item.asked(grant, lead, None, None, request_id) for lead, _, _ in recent], True, None)
        rows = _online(served, [stored_id(session.tenant, r["lead_id"]) for r in body["results"]])
        explained = served.model.score(rows, explain="path", top_k=2) if rows else []
        return body, rows, explained

    body, rows, explained = await loop.run_in_executor(service.executor, work)
    features = list(served.model.features)
    source = _feature(state, features, "LEADSCORE_CONSOLE_SOURCE_FEATURES", "lead_source,source,channel")
    city = _feature(state, features, "LEADSCORE_CONSOLE_CITY_FEATURES", "city")
    now = datetime.now(UTC)
    listed = []
    for result, row, exp in zip(body["results"], rows, explained, strict=True):
        listed.append({**result, "explanation": exp.get("explanation", ""),
                       "last_activity": last.get(result["lead_id"]), "ago": ago(last.get(result["lead_id"]), now),
                       "broker": owner.get(result["lead_id"]),
                       "source": row.get(source) if source else None, "city": row.get(city) if city else None})

    def options(key: str) -> list[str]:
        return sorted({str(r[key]) for r in listed if r[key] not in (None, "")})[:100]

    filters = {"tier": options("tier"), "source": options("source") if source else None,
               "city": options("city") if city else None}
    shown = [r for r in listed if all(not chosen.get(k) or str(r[k]) == chosen[k] for k in ("tier", "source", "city"))]
    return {"rows": shown, "total": len(listed), "filters": filters, "chosen": chosen, "mine": mine(session),
            "source_feature": source, "city_feature": city, "reranked": body.get("reranked", False),
            "model_version": served.model.version, "feature_service": served.model.feature_service,
            "refused": len(body["refused"]), "not_found": len(body["not_found"]),
            "took_ms": round((time.perf_counter() - started) * 1000)}


async def lead_page(state: dict[str, Any], session: Session, lead_id: str) -> dict[str, Any] | None:
    """One lead's page, or None when the tenant holds no such lead."""
    from serving.engine import Item

    service = state["service"]
    engine = service.engine
    served = engine.require()
    loop = asyncio.get_running_loop()
    tables = await loop.run_in_executor(None, tables_for, engine, served.model.feature_service)
    facts = await loop.run_in_executor(None, data.lead_facts, state["db"], session.tenant, lead_id, tables,
                                       mine(session))
    if facts is None:
        return None
    item = Item.asked(_grant(session), lead_id, None, None)
    status, body = (await loop.run_in_executor(service.executor, engine.score_batch, [item], [6], ["path"]))[0]
    consent = {c["purpose"]: c["granted"] for c in facts.consent}
    scored = body if status == 200 else None
    bars = (scored["top_positive"] + scored["top_negative"]) if scored else []
    return {"lead_id": lead_id, "status": status, "score": scored, "reason": None if scored else body.get("reason"),
            "chart": contributions(bars), "history_chart": history(facts.history), "history": facts.history[-10:],
            "consent": facts.consent, "messages": facts.messages, "activity": facts.activity,
            "texts_shown": bool(consent.get("text_analysis")),
            "last_activity": facts.last_activity, "ago": ago(facts.last_activity), "broker": facts.broker}
