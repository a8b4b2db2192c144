"""Helpers for the serving tests: a champion in the registry, the real service as a subprocess, API calls."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from infra.config import Settings
from tests.conftest import REPO, SHARED_DATA, leadscore

MODEL = "lead-scorer-serving-it"  # a name of its own: other modules' registrations cannot move its alias
SERVER_ENV = {"LEADSCORE_MODEL_NAME": MODEL, "LEADSCORE_MODEL_POLL_S": "1", "LEADSCORE_CONSENT_TTL_S": "0.3",
              "LEADSCORE_KEY_CACHE_TTL_S": "0.3", "LEADSCORE_LOG_FLUSH_S": "0.2",
              "LEADSCORE_SERVING_MAX_BODY": "2000000"}


def run_ok(args: list[str], env: dict[str, str], timeout: float = 600) -> str:
    done = leadscore(args, env, timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def ensure_champion(settings: Settings, env: dict[str, str]) -> str:
    """Ingest X Education, materialize it, train a small ensemble under MODEL and promote it; its version."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from pipelines.ingest import ingest_crm
    from pipelines.materialize import materialize
    from pipelines.spec import load_spec

    spec = load_spec(REPO / "feature_repo/datasets/xeducation.yaml")
    ingest_crm(settings, SHARED_DATA / "xeducation_Leads.csv", spec, progress=False)
    materialize(settings, ["xeducation"])
    client = MlflowClient(settings.tracking_uri)
    try:
        return client.get_model_version_by_alias(MODEL, "champion").version
    except MlflowException:
        pass
    run_ok(["train", "--feature-service", "xeducation_v1", "--trials", "0", "--max-epochs", "10", "--model-name",
            MODEL, "--no-progress"], env)
    run_ok(["promote", "--model-name", MODEL], env)
    return client.get_model_version_by_alias(MODEL, "champion").version


def create_key(env: dict[str, str], label: str, *extra: str, tenant: str = "default") -> str:
    """A key named `label` (its description) of `tenant`: the default tenant's leads are what the suite ingests
    without --tenant; label 'admin' makes a key of tenant admin."""
    tenant = "admin" if label == "admin" else tenant
    return run_ok(["serve", "keys", "create", "--tenant", tenant, "--description", label, *extra],
                  env).strip().splitlines()[-1]


@contextmanager
def serving(env: dict[str, str], port: int, log: Path, ready_timeout: float = 180,
            model: str = MODEL) -> Iterator[str]:
    """`leadscore serve` of `model`@champion on `port` until the block ends; yields its URL once /readyz is 200."""
    script = Path(os.environ.get("VIRTUAL_ENV", "")) / "bin" / "leadscore"
    argv = [str(script)] if script.exists() else ["leadscore"]
    with open(log, "w") as out:
        proc = subprocess.Popen([*argv, "serve", "--port", str(port)],
                                env={**env, **SERVER_ENV, "LEADSCORE_MODEL_NAME": model}, cwd=REPO,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            assert proc.poll() is None, f"the service exited: {log.read_text()[-3000:]}"
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"not ready in {ready_timeout} s: {log.read_text()[-3000:]}"
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # our own process group only
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def post(url: str, path: str, body: object, key: str | None, timeout: float = 60) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(f"{url}{path}", json=body, headers=headers, timeout=timeout)


def wait_for(predicate, timeout: float = 15, every: float = 0.2):  # noqa: ANN001, ANN201
    """Poll until predicate() is truthy; return its value (fail after `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(every)
