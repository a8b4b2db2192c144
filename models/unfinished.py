"""Training runs that failed: marked FAILED and their model versions deleted, now or, if the registry is down, by
the next command that talks to it (`configure_mlflow`), so nothing stays half-registered.

A failed run is written to `<state>/mlflow/unfinished.jsonl` only while the registry cannot be told; the file is
emptied as soon as every run in it is settled.
"""

from __future__ import annotations

import json
from pathlib import Path

from infra.config import Settings


def _path(settings: Settings) -> Path:
    return settings.state_dir / "mlflow" / "unfinished.jsonl"


def _settle_one(client, run_id: str) -> None:  # noqa: ANN001 - MlflowClient
    """Mark the run FAILED if it is still open and delete every model version made from it."""
    run = client.get_run(run_id)
    if run.info.status in ("RUNNING", "SCHEDULED"):
        client.set_terminated(run_id, "FAILED")
    client.set_tag(run_id, "leadscore.failed", "the command that ran it failed; its model versions were deleted")
    for version in client.search_model_versions(f"run_id = '{run_id}'"):
        client.delete_model_version(version.name, version.version)


def fail_run(settings: Settings, run_id: str) -> bool:
    """Settle a failed run now; if the registry does not answer, keep it for later. True if settled now."""
    from mlflow import MlflowClient

    try:
        _settle_one(MlflowClient(), run_id)
        return True
    except Exception:  # noqa: BLE001 - the registry is down or refusing: settle it at the next command
        path = _path(settings)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as f:
            f.write(json.dumps({"run_id": run_id}) + "\n")
        return False


def settle(settings: Settings) -> list[str]:
    """Settle the runs kept by fail_run; return those settled (the others stay in the file)."""
    from mlflow import MlflowClient

    path = _path(settings)
    if not path.exists():
        return []
    pending = [json.loads(line)["run_id"] for line in path.read_text().splitlines() if line.strip()]
    done, left = [], []
    client = MlflowClient()
    for run_id in dict.fromkeys(pending):
        try:
            _settle_one(client, run_id)
            done.append(run_id)
        except Exception:  # noqa: BLE001 - still unreachable: next time
            left.append(run_id)
    if left:
        path.write_text("".join(json.dumps({"run_id": r}) + "\n" for r in left))
    else:
        path.unlink(missing_ok=True)
    return done
