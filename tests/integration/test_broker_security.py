"""The product's Kafka clients take the broker's security settings (KAFKA_SECURITY_PROTOCOL, SASL, TLS).

The embedded broker (noida-db 0.2.3) offers SASL/PLAIN but accepts any password, refuses SCRAM and has no TLS
(docs/security.md): so what can be shown here is that a stream worker and our producer speak SASL_PLAINTEXT
end to end, and that a wrong setting stops the worker with one readable line before it connects anywhere.
A rejected wrong password needs a production Kafka (the Kubernetes manifests set these variables)."""

from __future__ import annotations

import os
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from infra.config import Settings
from pipelines.demo_stream import stop_worker
from pipelines.simulate import produce
from pipelines.streams.sinks import wait_for
from tests.conftest import leadscore
from tests.integration.stream_support import events_for, expected_rows, offline_latest, rows_match
from tests.integration.test_streams import _log, _start_worker

pytestmark = [pytest.mark.integration, pytest.mark.slow]
LEADS = [f"SASL-{i:02d}" for i in range(8)]


@pytest.fixture(scope="module")
def sasl_env(stack_env_vars: dict[str, str], settings: Settings, applied_store) -> dict[str, str]:  # noqa: ANN001
    import psycopg

    from pipelines.streams.topics import ensure_topics

    with psycopg.connect(settings.pg_dsn()) as conn:
        for lead in LEADS:
            conn.execute("INSERT INTO compliance.consent (lead_id, purpose, granted, source) VALUES (%s, 'scoring', "
                         "true, 'test') ON CONFLICT (lead_id, purpose) DO UPDATE SET granted = true", (lead,))
    ensure_topics(settings)
    return {**stack_env_vars, "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_MECHANISM": "PLAIN",
            "KAFKA_SASL_USERNAME": "leadscore-streams", "KAFKA_SASL_PASSWORD": secrets.token_urlsafe(16),
            "LEADSCORE_STREAM_GROUP": f"leadscore-streams-sasl-{os.getpid()}"}


def test_a_worker_and_our_producer_over_sasl_plaintext_land_events_in_the_store(sasl_env, settings) -> None:  # noqa: ANN001
    worker = _start_worker(sasl_env)
    try:
        items = events_for(LEADS, 3, datetime.now(UTC) - timedelta(minutes=10))
        raw = [(topic, event.lead_id, event.dumps()) for topic, event in items]
        security = Settings.load(sasl_env).kafka_options()
        assert security["security_protocol"] == "SASL_PLAINTEXT"
        assert produce(settings.kafka_bootstrap, raw, progress=False, security=security) == len(raw)
        expected = expected_rows(items)
        assert wait_for(lambda: rows_match(expected, offline_latest(settings, LEADS)), 90), _log(sasl_env)
        log = (Path(sasl_env["LEADSCORE_STATE_DIR"]) / "stream-worker.log").read_text(errors="replace")
        assert "Authenticated as leadscore-streams via PLAIN" in log, _log(sasl_env)  # aiokafka's own line
        # and Prometheus (infra up's, scraping every second here) finds the worker and reads what it counted
        query = f'sum(leadscore_stream_events_in_total{{job="leadscore-streams",worker="{worker.pid}"}})'
        assert wait_for(lambda: _prometheus_value(settings, query) >= len(raw), 60), _prometheus_value(settings,
                                                                                                      query)
    finally:
        stop_worker(worker)


def _prometheus_value(settings: Settings, query: str) -> float:
    import json
    import urllib.parse
    import urllib.request

    url = f"{settings.prometheus_url}/api/v1/query?{urllib.parse.urlencode({'query': query})}"
    with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - the stack's own Prometheus
        result = json.loads(resp.read())["data"]["result"]
    return float(result[0]["value"][1]) if result else 0.0


@pytest.mark.parametrize(("extra", "line"), [
    ({"KAFKA_SECURITY_PROTOCOL": "SASL"}, "KAFKA_SECURITY_PROTOCOL='SASL' is not one of"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": "u"}, "needs KAFKA_SASL_USERNAME"),
])
def test_a_wrong_broker_setting_stops_the_worker_with_one_readable_line(stack_env_vars, extra, line) -> None:  # noqa: ANN001
    done = leadscore(["stream", "worker", "--metrics-port", "0"], {**stack_env_vars, **extra}, timeout=120)
    assert done.returncode == 1 and line in done.stderr and "Traceback" not in done.stderr, done.stderr[-2000:]


def test_the_kubernetes_manifests_pass_the_broker_security_settings() -> None:
    manifests = Path(__file__).resolve().parents[2] / "infra" / "k8s"
    assert "KAFKA_SECURITY_PROTOCOL" in (manifests / "configmap.yaml").read_text()
    assert "secretRef: { name: leadscore-secrets }" in (manifests / "stream-worker.yaml").read_text()
    secret = (manifests / "secret.example.yaml").read_text()
    assert "KAFKA_SASL_PASSWORD" in secret and "MLFLOW_TRACKING_PASSWORD" in secret
    assert "--app-name basic-auth" in (manifests / "mlflow.yaml").read_text()
