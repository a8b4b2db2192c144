"""Shared fixtures: a private LeadScore stack (own state directory, own free ports) for the test session."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from infra.config import Settings

REPO = Path(__file__).resolve().parent.parent
SERVICES = ("postgres", "redis", "kafka", "mlflow", "serving", "prometheus", "evidently", "monitor")


def free_ports(n: int) -> list[int]:
    """n distinct ports that nothing listens on right now."""
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def stack_env(state_dir: Path, ports: list[int] | None = None) -> dict[str, str]:
    """Environment for a stack in `state_dir` on `ports` (fresh free ports by default)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LEADSCORE_", "MLFLOW_TRACKING_")) and k != "KAFKA_BOOTSTRAP_SERVERS"}
    env["LEADSCORE_STATE_DIR"] = str(state_dir)
    for name, port in zip(SERVICES, ports or free_ports(len(SERVICES)), strict=True):
        env[f"LEADSCORE_{name.upper()}_PORT"] = str(port)
    return env


def leadscore(args: list[str], env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run the real `leadscore` command line in a subprocess."""
    script = Path(sys.executable).parent / "leadscore"
    argv = [str(script)] if script.exists() else [sys.executable, "-m", "infra"]
    return subprocess.run([*argv, *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO)


def _up_or_purge(env: dict[str, str]) -> None:
    """`infra up` for a test's stack; if it fails part-way, the servers it did start are stopped and its state
    purged before the failure is reported (nothing of it is left running)."""
    done = leadscore(["infra", "up"], env)
    if done.returncode != 0:
        leadscore(["infra", "down", "--purge"], env)
        pytest.fail(f"infra up failed: {done.stdout[-3000:]}{done.stderr[-3000:]}")


@contextmanager
def private_stack(state_dir: Path, **extra: str) -> Iterator[dict[str, str]]:
    """A stack of a module's own (`infra up` in `state_dir` on free ports) with os.environ pointing at it for the
    block (in-process helpers and the workers they start read it: the session stack's must not leak in); the
    environment restored and the stack purged afterwards."""
    env = {**stack_env(state_dir), **extra}
    _up_or_purge(env)
    saved = dict(os.environ)
    for name in [k for k in os.environ if k.startswith(("LEADSCORE_", "MLFLOW_")) or k == "KAFKA_BOOTSTRAP_SERVERS"]:
        del os.environ[name]
    os.environ.update(env)
    login = Settings.load(env).mlflow_login("trainer")
    if login:  # in-process MLflow clients sign in as the stack's trainer (its subprocesses find their own)
        os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = login
    try:
        yield env
    finally:
        os.environ.clear()
        os.environ.update(saved)
        if saved.get("MLFLOW_TRACKING_URI"):
            import mlflow

            mlflow.set_tracking_uri(saved["MLFLOW_TRACKING_URI"])
        leadscore(["infra", "down", "--purge"], env)


@pytest.fixture(scope="session")
def stack_env_vars(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A whole stack started with `leadscore infra up` for the session, stopped with `infra down` at the end."""
    env = stack_env(tmp_path_factory.mktemp("stack") / "state")
    env["LEADSCORE_PROMETHEUS_SCRAPE_S"] = "1"  # alerts within seconds of a new monitor result
    _up_or_purge(env)
    yield env
    leadscore(["infra", "down", "--purge"], env)


@pytest.fixture(scope="session")
def settings(stack_env_vars: dict[str, str]) -> Settings:
    """The session stack's settings; in-process MLflow clients of the tests sign in as its trainer user."""
    loaded = Settings.load(stack_env_vars)
    login = loaded.mlflow_login("trainer")
    if login:
        os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = login
    return loaded


SHARED_DATA = Path(os.environ.get("LEADSCORE_DATA_DIR", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def applied_store(settings: Settings):  # noqa: ANN201 - feast.FeatureStore
    """The Feast repo applied to the session stack's registry; returns a FeatureStore over it."""
    from pipelines.feature_store import apply, feature_store

    apply(settings)
    return feature_store(settings)
