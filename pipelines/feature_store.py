"""Open LeadScore's Feast repo with the configuration of this machine's servers."""

from __future__ import annotations

import os
from pathlib import Path

from infra.config import REPO_ROOT, Settings

FEATURE_REPO = REPO_ROOT / "feature_repo"


def feature_store(settings: Settings, repo_path: Path = FEATURE_REPO,  # noqa: ANN201 - feast.FeatureStore
                  role: str | None = None):
    """A feast.FeatureStore for `repo_path`; sets the ${VAR}s its feature_store.yaml expands in this process
    (PostgreSQL and Redis as the owner, or as a component's role: `serving` reads the registry and the online
    store only)."""
    os.environ.update(settings.feast_env(role))
    from feast import FeatureStore

    return FeatureStore(repo_path=str(repo_path))


def apply(settings: Settings, repo_path: Path = FEATURE_REPO) -> None:
    """`feast apply` for the repo: register entities, sources, views and services in the SQL registry."""
    import subprocess
    import sys

    env = {**os.environ, **settings.feast_env()}
    feast = Path(sys.executable).parent / "feast"
    done = subprocess.run([str(feast), "-c", str(repo_path), "apply"], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        lines = [ln for ln in (done.stderr or done.stdout).strip().splitlines() if ln.strip()]
        raise RuntimeError(f"feast apply failed: {lines[-1] if lines else 'no output'}")
