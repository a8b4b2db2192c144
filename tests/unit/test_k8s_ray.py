"""The KubeRay manifests (infra/k8s/ray/) stay in step with the code: the Ray version the project pins, token
authentication and usage stats off on every Ray container, and a job entrypoint the real command line accepts.
No Kubernetes here: this checks what can be checked without one."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, leadscore

RAY_DIR = REPO / "infra" / "k8s" / "ray"


def _pinned_ray() -> str:
    found = re.search(r'"ray\[[^\]]*\]==([0-9.]+)"', (REPO / "pyproject.toml").read_text())
    assert found, "pyproject.toml pins no ray version"
    return found.group(1)


def _cluster_specs() -> dict[str, dict]:
    cluster = yaml.safe_load((RAY_DIR / "raycluster.yaml").read_text())
    job = yaml.safe_load((RAY_DIR / "rayjob-score-batch.yaml").read_text())
    assert cluster["kind"] == "RayCluster" and job["kind"] == "RayJob"
    return {"raycluster": cluster["spec"], "rayjob": job["spec"]["rayClusterSpec"]}


def _containers(spec: dict) -> list[dict]:
    groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
    return [c for g in groups for c in g["template"]["spec"]["containers"]]


@pytest.mark.parametrize("name", ["raycluster", "rayjob"])
def test_every_ray_cluster_runs_the_pinned_ray_with_token_auth_and_no_usage_stats(name: str) -> None:
    spec = _cluster_specs()[name]
    assert spec["rayVersion"] == _pinned_ray()  # driver (the leadscore image) and cluster must be one version
    assert spec["authOptions"] == {"mode": "token"}
    for container in _containers(spec):
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        assert env.get("RAY_USAGE_STATS_ENABLED") == "0", (name, container["name"])
        assert container["image"] == "leadscore"
        refs = [next(iter(r.values()))["name"] for r in container["envFrom"]]
        assert refs == ["leadscore-config", "leadscore-secrets"], (name, container["name"])  # the stores' logins
        assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_the_jobs_entrypoint_is_a_command_the_cli_accepts() -> None:
    job = yaml.safe_load((RAY_DIR / "rayjob-score-batch.yaml").read_text())
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[:2] == ["leadscore", "score-batch"] and "--ray-address" in argv
    # click parses every option before --help acts: an unknown or mistyped one fails here with exit 2
    done = leadscore([*argv[1:], "--help"], dict(os.environ), timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    wrong = leadscore([*argv[1:], "--no-such-flag", "--help"], dict(os.environ), timeout=60)
    assert wrong.returncode == 2  # the check above would see a bad flag


def test_the_ray_kustomization_lists_the_cluster() -> None:
    kustomization = yaml.safe_load((RAY_DIR / "kustomization.yaml").read_text())
    assert [Path(r).name for r in kustomization["resources"]] == ["raycluster.yaml"]
    assert kustomization["namespace"] == "leadscore"
