"""The fault matrix's registry cases (issue #17): the MLflow server down during `train`, during the scoring service's
registry poll and during `promote`. Nothing half-registered, the model in service kept, one readable line."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from infra.config import Settings
from tests.conftest import REPO
from tests.integration.serving_support import MODEL as SERVING_MODEL
from tests.integration.serving_support import create_key, ensure_champion, post, serving, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]
MODEL = "lead-scorer-faults-it"  # this module's own model: nothing else registers under it
FAST = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1"}  # the registry's silence said within seconds


def _leadscore(env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen([str(Path(sys.executable).parent / "leadscore"), *args], env={**env, **FAST}, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _restart_registry(settings: Settings) -> None:
    from infra import stack

    stack.up(settings, say=lambda _: None)


def test_train_with_the_registry_down_fails_in_one_line_and_leaves_nothing_registered(
        settings: Settings, stack_env_vars: dict[str, str], applied_store) -> None:  # noqa: ANN001
    from mlflow import MlflowClient

    from infra.mlflow_server import MLflowServer
    from pipelines.ingest import ingest_crm
    from pipelines.spec import load_spec
    from tests.conftest import SHARED_DATA

    spec = load_spec(REPO / "feature_repo/datasets/xeducation.yaml")
    ingest_crm(settings, SHARED_DATA / "xeducation_Leads.csv", spec, progress=False)
    client = MlflowClient(settings.tracking_uri)
    started = int(time.time() * 1000)
    proc = _leadscore(stack_env_vars, "train", "--feature-service", "xeducation_v1", "--trials", "2", "--max-epochs",
                      "10", "--model-name", MODEL, "--no-progress")

    def our_run():  # noqa: ANN202
        experiment = client.get_experiment_by_name(settings.experiment_name)  # made by the first train
        if experiment is None:
            return None
        runs = client.search_runs([experiment.experiment_id], "attributes.status = 'RUNNING' and "
                                  f"attributes.start_time >= {started} and tags.`leadscore.step` = 'train'")
        return runs[0] if runs else None

    try:
        assert wait_for(lambda: our_run() is not None or proc.poll() is not None, timeout=240), "no run started"
        run = our_run()
        assert run is not None, proc.communicate()
        MLflowServer(settings).stop()  # while the ensemble is being fitted: the next call to the registry fails
        out, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
        _restart_registry(settings)
    lines = [line for line in err.splitlines() if line.strip()]
    assert proc.returncode == 1, (out[-2000:], err[-2000:])
    assert lines[-1].startswith(f"error: the MLflow registry at {settings.tracking_uri} did not answer"), err[-2000:]
    assert "Traceback" not in err and "leadscore infra up" in lines[-1]
    assert "registered" not in out.split("plots:")[-1], out[-2000:]
    # the next command that talks to the registry marks the run failed and deletes whatever version it made
    subprocess.run([str(Path(sys.executable).parent / "leadscore"), "promote", "--model-name", MODEL, "--dry-run"],
                   env=stack_env_vars, cwd=REPO, capture_output=True, text=True, timeout=300)
    settled = client.get_run(run.info.run_id)
    assert settled.info.status == "FAILED" and "leadscore.failed" in settled.data.tags, settled.info
    assert client.search_model_versions(f"run_id = '{run.info.run_id}'") == []
    assert not (settings.state_dir / "mlflow" / "unfinished.jsonl").exists()


def test_the_service_keeps_its_model_and_promote_says_so_while_the_registry_is_down(
        settings: Settings, stack_env_vars: dict[str, str], tmp_path: Path) -> None:
    from mlflow import MlflowClient

    from infra.mlflow_server import MLflowServer

    version = ensure_champion(settings, stack_env_vars)
    key = create_key(stack_env_vars, "it-registry-faults")
    import psycopg

    with psycopg.connect(settings.pg_dsn()) as conn:
        lead = conn.execute("SELECT lead_id FROM offline.xeducation ORDER BY lead_id LIMIT 1").fetchone()[0]
    with serving({**stack_env_vars, **FAST}, settings.serving_port, tmp_path / "serve.log") as url:
        assert post(url, "/score", {"lead_id": lead}, key).json()["model_version"] == version
        MLflowServer(settings).stop()
        try:
            time.sleep(4)  # several polls (1 s apart in tests), each failing
            r = post(url, "/score", {"lead_id": lead}, key)
            assert r.status_code == 200 and r.json()["model_version"] == version, r.text
            ready = httpx.get(f"{url}/readyz", timeout=10)
            assert ready.status_code == 200, ready.text
            t0 = time.monotonic()
            promote = _leadscore(stack_env_vars, "promote", "--model-name", SERVING_MODEL)
            _, err = promote.communicate(timeout=120)
            took = time.monotonic() - t0
        finally:
            _restart_registry(settings)
        assert promote.returncode == 1 and took < 60, (promote.returncode, took, err)
        last = err.strip().splitlines()[-1]
        assert last.startswith("error: the MLflow registry at") and "did not answer" in last, err
        assert "no @challenger" not in err and "Traceback" not in err
        assert wait_for(lambda: post(url, "/score", {"lead_id": lead}, key).status_code == 200, timeout=30)
    assert MlflowClient(settings.tracking_uri).get_model_version_by_alias(
        SERVING_MODEL, "champion").version == version
