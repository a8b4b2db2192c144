"""The main job's model steps: train on the ingested CRM data, promote, serve the champion and score one lead.

The scoring call is a real HTTP request to the service `infra up` starts once a champion exists, with an API key
kept in the state directory (`secrets/demo_api_key`, mode 0600) so the printed `curl` works as it is.
"""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Callable

from infra.config import Settings

DEMO_KEY = "demo_api_key"


def train_and_promote(settings: Settings, feature_service: str, say: Callable[[str], None] = print) -> dict:
    """Train the ensemble (a small tuning budget), register it as @challenger, promote it if at least as good."""
    from models.fit import FitOptions
    from models.promote import promote
    from models.train import train

    options = FitOptions(trials=3, budget=30.0, increasing=("time_on_website_s",), progress=os.isatty(1))
    out = train(settings, feature_service, options, say=lambda line: say(f"      {line}"))
    decision = promote(settings)
    return {"version": out.version, "model_name": out.model_name, "metrics": out.result.test_metrics["ensemble"],
            "promoted": decision.promoted, "reason": decision.reason}


def demo_key(settings: Settings) -> str:
    """The demo's API key: created once, kept in the state directory with mode 0600."""
    from serving.keys import create_key

    path = settings.secrets_dir / DEMO_KEY
    if path.exists():
        return path.read_text().strip()
    key, _ = create_key(settings, "default", rate_per_s=5000.0, description="leadscore demo (README's first command)")
    settings.secrets_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(key)
    return key


def serve_and_score(settings: Settings, lead_id: str, say: Callable[[str], None] = print) -> dict:
    """Start the service (if not running) and score `lead_id` over HTTP; return the response.

    A service left running from an earlier run may still hold the previous champion (it polls the registry every
    few seconds): it is restarted so that the version just promoted is the one that answers."""
    from infra.servers import ServingServer
    from infra.stack import start_serving
    from serving.model import champion_version

    if not start_serving(settings, say):
        raise RuntimeError(f"no {settings.model_name}@champion to serve: promotion did not happen")
    body = _score(settings, lead_id)
    champion = champion_version(settings.model_name)
    if champion is not None and body.get("model_version") != champion:
        say(f"      the running service held version {body.get('model_version')}; restarting it on {champion}")
        ServingServer(settings).stop()
        start_serving(settings, say)
        body = _score(settings, lead_id)
    return body


def _score(settings: Settings, lead_id: str) -> dict:
    request = urllib.request.Request(
        f"http://{settings.host}:{settings.serving_port}/score", method="POST",
        data=json.dumps({"lead_id": lead_id, "top_k": 3}).encode(),
        headers={"Authorization": f"Bearer {demo_key(settings)}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as resp:  # noqa: S310 - our own loopback service
        return json.loads(resp.read())


def curl_line(settings: Settings, lead_id: str) -> str:
    key_file = settings.secrets_dir / DEMO_KEY
    return (f"curl -s -X POST http://{settings.host}:{settings.serving_port}/score -H \"Authorization: Bearer "
            f"$(cat {key_file})\" -H 'Content-Type: application/json' -d '{{\"lead_id\": \"{lead_id}\"}}'")
