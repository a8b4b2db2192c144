"""The monitor over the real stack: scores served by the real service, drift by `leadscore monitor`, the report in
the real Evidently UI, gauges scraped by the real Prometheus and its alerts read over Prometheus's HTTP API."""

from __future__ import annotations

import json
import re
import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import psycopg
import pytest

from infra.config import Settings
from tests.conftest import leadscore
from tests.integration.serving_support import create_key, post, run_ok, serving

pytestmark = [pytest.mark.integration, pytest.mark.slow]
MODEL = "lead-scorer-monitor-it"  # its own name: nothing else moves its aliases or scores under it
SHIFTED = {"total_visits": (25.0, 40.0), "time_on_website_s": (2500.0, 4000.0)}  # uniform ranges far from the data


@pytest.fixture(scope="module")
def env(stack_env_vars: dict[str, str], settings: Settings, applied_store) -> dict[str, str]:  # noqa: ANN001
    from tests.integration.serving_support import ensure_champion

    ensure_champion(settings, stack_env_vars)  # X Education ingested and materialized (the serving tests' model)
    env = {**stack_env_vars, "LEADSCORE_MODEL_NAME": MODEL}
    run_ok(["train", "--feature-service", "xeducation_v1", "--trials", "0", "--max-epochs", "5", "--model-name",
            MODEL, "--no-progress"], env)
    run_ok(["promote", "--model-name", MODEL], env)
    return env


@pytest.fixture(scope="module")
def phases(env: dict[str, str], settings: Settings, tmp_path_factory) -> dict[str, tuple[str, str]]:  # noqa: ANN001
    """Every lead ranked three times as stored (three windows without drift), then once with two features shifted
    inline (one window of covariate shift); each phase's [since, until) as ISO times."""
    with psycopg.connect(settings.pg_dsn()) as conn:
        leads = [r[0] for r in conn.execute("SELECT lead_id FROM offline.xeducation ORDER BY lead_id")]
    key = create_key(env, "it-monitor", "--rate", "100000", "--burst", "100000")
    rng = np.random.default_rng(3)
    out: dict[str, tuple[str, str]] = {}
    with serving(env, settings.serving_port, tmp_path_factory.mktemp("monitor") / "serve.log", model=MODEL) as url:
        for phase in ("steady-1", "steady-2", "steady-3", "shifted"):
            since = datetime.now(UTC)
            for i in range(0, len(leads), 2000):
                chunk = leads[i:i + 2000]
                body = [{"lead_id": lead} if phase != "shifted" else
                        {"lead_id": lead, "features": {f: float(rng.uniform(*r)) for f, r in SHIFTED.items()}}
                        for lead in chunk]
                assert post(url, "/rank", {"leads": body}, key).status_code == 200
            time.sleep(1.0)  # the log writer flushes every 0.2 s
            out[phase] = (since.isoformat(), datetime.now(UTC).isoformat())
    return out


def monitor(env: dict[str, str], *args: str, timeout: float = 300):  # noqa: ANN201 - CompletedProcess
    return leadscore(["monitor", *args], env, timeout=timeout)


def test_steady_windows_show_no_drift_and_a_shift_is_caught_in_its_first_window(
        env, phases, settings: Settings) -> None:  # noqa: ANN001
    for phase in ("steady-1", "steady-2", "steady-3"):
        since, until = phases[phase]
        done = monitor(env, "drift", "--model", MODEL, "--since", since, "--until", until)
        assert done.returncode == 0, done.stderr + done.stdout
        print(done.stdout)  # the false-alarm check's figures: methods, scores and thresholds per window
        assert "drifted features: 0 of" in done.stdout, done.stdout
        assert "(prediction drift)" in done.stdout and "DRIFT  (prediction drift)" not in done.stdout
    since, until = phases["shifted"]
    done = monitor(env, "drift", "--model", MODEL, "--since", since, "--until", until)
    assert done.returncode == 0, done.stderr + done.stdout
    print(done.stdout)
    drifted = [line.split()[0] for line in done.stdout.splitlines() if line.rstrip().endswith("DRIFT")]
    assert set(SHIFTED) <= set(drifted), done.stdout
    assert "Wasserstein distance (normed)" in done.stdout and "Jensen-Shannon distance" in done.stdout
    with psycopg.connect(settings.pg_dsn()) as conn:
        summary = conn.execute("SELECT summary FROM monitoring.results WHERE model_name = %s AND kind = 'drift' "
                               "ORDER BY id DESC LIMIT 1", (MODEL,)).fetchone()[0]
    for name in SHIFTED:
        assert summary["features"][name]["method"] == "wasserstein" and summary["features"][name]["drifted"]
    report = next(line.split(": ", 1)[1] for line in done.stdout.splitlines() if line.startswith("report: "))
    html = Path(report).read_text()
    assert "total_visits" in html and "<script" in html  # self-contained: no script or style loaded from elsewhere
    assert not re.findall(r"<script[^>]*\bsrc=|<link[^>]*\bhref=", html)


def test_the_drift_run_is_in_mlflow_and_in_the_evidently_ui(env, phases, settings: Settings) -> None:  # noqa: ANN001
    from mlflow import MlflowClient

    since, until = phases["shifted"]
    done = monitor(env, "drift", "--model", MODEL, "--since", since, "--until", until)
    assert done.returncode == 0 and "not sent to" not in done.stderr, done.stdout + done.stderr
    run_id = next(line.split(": ", 1)[1] for line in done.stdout.splitlines() if line.startswith("MLflow run: "))
    run = MlflowClient(settings.tracking_uri).get_run(run_id)
    assert run.data.tags["leadscore.step"] == "monitor" and run.data.tags["model_name"] == MODEL
    assert run.data.tags["model_version"] and run.data.metrics["drift_score.total_visits"] >= 0.1
    artifacts = [a.path for a in MlflowClient(settings.tracking_uri).list_artifacts(run_id, "drift")]
    assert any(a.endswith(".html") for a in artifacts) and "drift/summary.json" in artifacts
    # the Evidently UI, over its REST API, with no secret: projects and their snapshots are readable
    base = settings.evidently_url
    projects = json.loads(urllib.request.urlopen(f"{base}/api/projects", timeout=10).read())  # noqa: S310
    project = next(p for p in projects if p["name"] == MODEL)
    snapshots = json.loads(urllib.request.urlopen(f"{base}/api/projects/{project['id']}/snapshots",  # noqa: S310
                                                  timeout=10).read())
    assert len(snapshots) >= 2 and all("model:" + MODEL in s.get("tags", []) for s in snapshots)
    dashboard = json.loads(urllib.request.urlopen(f"{base}/api/v2/dashboards/{project['id']}",  # noqa: S310
                                                  timeout=10).read())
    assert {"Share of drifted features", "Prediction drift", "Realized ROC AUC"} <= \
        {p["title"] for p in dashboard["panels"]}


def prometheus(settings: Settings, path: str) -> dict:
    with urllib.request.urlopen(f"{settings.prometheus_url}{path}", timeout=10) as resp:  # noqa: S310
        return json.loads(resp.read())


def test_prometheus_fires_the_drift_alert_from_the_monitors_gauges(env, phases, settings: Settings,  # noqa: ANN001
                                                                   tmp_path) -> None:
    import subprocess

    since, until = phases["shifted"]
    assert monitor(env, "drift", "--model", MODEL, "--since", since, "--until", until).returncode == 0
    with open(tmp_path / "metrics.log", "w") as log:
        proc = subprocess.Popen([*_argv(), "monitor", "metrics", "--model", MODEL], env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline, firing = time.monotonic() + 90, []
        while time.monotonic() < deadline:
            alerts = prometheus(settings, "/api/v1/alerts")["data"]["alerts"]
            firing = {(a["labels"]["alertname"], a["labels"].get("feature")) for a in alerts
                      if a["state"] == "firing" and a["labels"].get("model") == MODEL}
            if {("FeatureDrift", f) for f in SHIFTED} <= firing:
                break
            time.sleep(1)
        assert {("FeatureDrift", f) for f in SHIFTED} <= firing, (firing, (tmp_path / "metrics.log").read_text())
        assert ("FeatureDriftScoreHigh", "total_visits") in firing
        series = prometheus(settings, "/api/v1/query?query=leadscore_monitor_model_age_seconds")["data"]["result"]
        assert any(s["metric"]["model"] == MODEL for s in series)
        # the Grafana dashboard's queries are valid PromQL to this Prometheus, over series that exist
        dashboard = json.loads((Path(__file__).parents[2] / "monitoring/grafana/dashboards/leadscore.json").read_text())
        answered = 0
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                got = prometheus(settings, "/api/v1/query?query=" + urllib.parse.quote(target["expr"]))
                assert got["status"] == "success", (panel["title"], target["expr"])
                answered += bool(got["data"]["result"])
        assert answered >= 5  # drift share, feature and score drift, test AUC, model age (nothing serves now)
    finally:
        proc.terminate()
        proc.wait(30)


def _argv() -> list[str]:
    import sys

    script = Path(sys.executable).parent / "leadscore"
    return [str(script)] if script.exists() else [sys.executable, "-m", "infra"]


def test_bad_input_is_one_line_and_a_non_zero_exit(env, phases) -> None:  # noqa: ANN001
    cases = {("drift", "--model", "no-such-model"): "no registered model 'no-such-model'",
             ("drift", "--model", MODEL, "--since", "2001-01-01", "--until", "2001-01-02"): "nothing scored",
             ("drift", "--model", MODEL, "--window", "soon"): "is not a duration",
             ("drift", "--model", MODEL, "--since", "2026-13-45"): "is not an ISO 8601"}
    for args, message in cases.items():
        done = monitor(env, *args)
        assert done.returncode == 1 and message in done.stderr, (args, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    # the watch loop reports each failed cycle and goes on; a cycle without data retrains nothing
    done = monitor(env, "watch", "--model", "no-such-model", "--every", "1s", "--cycles", "2")
    assert done.returncode == 1 and done.stdout.count("cycle failed: MonitorError: no registered model") == 2, \
        done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    done = monitor(env, "run", "--model", MODEL, "--window", "1m", "--until", "2001-01-01")
    assert done.returncode == 0 and f"decision for {MODEL} v" in done.stdout, done.stdout + done.stderr
    assert "no_action" in done.stdout and "retraining" not in done.stdout
    down = {**env, "LEADSCORE_EVIDENTLY_URL": "http://127.0.0.1:9"}  # nothing listens on port 9
    since, until = phases["shifted"]
    done = monitor(down, "drift", "--model", MODEL, "--since", since, "--until", until)
    assert done.returncode == 0 and "drifted features:" in done.stdout, done.stdout + done.stderr
    assert "warning: not sent to the Evidently UI" in done.stderr and "Traceback" not in done.stderr
