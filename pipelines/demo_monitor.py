"""The main job's last step: rank the dataset's leads through the service, then one monitor cycle over them."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable
from datetime import timedelta

from infra.config import Settings

RANK_LEADS = 3000
CHUNK = 1000


def rank_leads(settings: Settings, table: str, say: Callable[[str], None] = print) -> int:
    """POST /rank for the first RANK_LEADS leads of `table` (the service logs each score with its features)."""
    import psycopg

    from pipelines.demo_model import demo_key

    with psycopg.connect(settings.pg_dsn()) as conn:
        leads = [r[0] for r in conn.execute(f"SELECT lead_id FROM {table} ORDER BY lead_id LIMIT %s",  # noqa: S608
                                            (RANK_LEADS,))]
    ranked = 0
    for i in range(0, len(leads), CHUNK):
        body = json.dumps({"leads": [{"lead_id": lead} for lead in leads[i:i + CHUNK]]}).encode()
        request = urllib.request.Request(
            f"http://{settings.host}:{settings.serving_port}/rank", method="POST", data=body,
            headers={"Authorization": f"Bearer {demo_key(settings)}", "Content-Type": "application/json"})
        ranked += len(_post_honouring_retry_after(request)["results"])
    return ranked


def _post_honouring_retry_after(request: urllib.request.Request, tries: int = 5) -> dict:
    """The JSON answer; a 429 (the key's rate counts leads) waits the Retry-After it names, as a CRM client would."""
    import time
    import urllib.error

    for attempt in range(tries):
        try:
            with urllib.request.urlopen(request, timeout=120) as resp:  # noqa: S310 - our own loopback service
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            if exc.code != 429 or attempt == tries - 1:
                raise
            time.sleep(float(exc.headers.get("Retry-After", "1")))
    raise AssertionError("unreachable")


def monitor_cycle(settings: Settings, say: Callable[[str], None] = print) -> dict:
    """One `monitor run` cycle over the last hour (drift, realized quality, the decision); returns its figures."""
    import time

    from monitoring.loop import LoopOptions, cycle

    time.sleep(1.0)  # the service writes its log in batches, twice a second by default
    lines: list[str] = []
    decision = cycle(settings, settings.model_name, LoopOptions(window=timedelta(hours=1),
                                                                performance_window=timedelta(hours=1)),
                     say=lines.append)
    keep = [line for line in lines if line.startswith(("drifted features", "score drift", "  cohort", "  20",
                                                         "  test"))]
    for line in keep:
        say(f"      {line.strip()}")
    say(f"      {decision.line()}")
    return {"decision": decision.action, "figures": decision.figures}
