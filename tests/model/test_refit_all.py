"""`train --refit-all`: the estimate is made and logged on the held-out rows, then every labelled row trains the
registered model (tracked in a real MLflow registry on SQLite; no servers)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra.config import Settings
from tests.unit.test_models import synthetic

pytestmark = pytest.mark.slow


def test_refit_all_registers_a_model_trained_on_every_labelled_row(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    from models.fit import FitOptions
    from models.train import train_frame

    settings = Settings.load({"LEADSCORE_STATE_DIR": str(tmp_path / "state"),
                              "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db",
                              "MLFLOW_EXPERIMENT_NAME": "refit", "LEADSCORE_MODEL_NAME": "refit-test"})
    frame = synthetic(1500)
    lines: list[str] = []
    options = FitOptions(members=("linear", "lightgbm"), trials=2, budget=60, folds=3, progress=False)
    # no PostgreSQL here, so no monitoring reference (tests/integration/test_monitoring.py keeps one)
    out = train_frame(settings, frame, "synthetic_v1", options, say=lines.append, refit_all=True, reference=False)
    estimate, registered = out.estimate, out.result
    assert len(estimate.split.train) == 1200 and len(estimate.split.test) == 300
    assert len(registered.split.train) == 1500 and registered.split.method == "all"
    client = MlflowClient(settings.tracking_uri)
    version = client.get_model_version("refit-test", out.version)
    assert version.tags["refit_all"] == "true" and version.aliases == ["challenger"]
    assert float(version.tags["test_roc_auc"]) == pytest.approx(estimate.test_metrics["ensemble"]["roc_auc"], abs=1e-4)
    run = client.get_run(out.run_id)
    assert run.data.tags["leadscore.refit_all"] == "true" and run.data.params["train_rows"] == "1200"
    assert run.data.metrics["refit_rows"] == 1500 and "test_roc_auc" in run.data.metrics
    local = Path(client.download_artifacts(out.run_id, "model/artifacts/bundle/ensemble.json", str(tmp_path)))
    meta = json.loads(local.read_text())
    assert meta["train_rows"] == 1500 and meta["split"] == "all"  # the registered files saw every labelled row
    assert meta["params"] == {m: estimate.studies[m].best_params for m in meta["members"]}  # the chosen configuration
    assert any("refitted on every labelled row" in line for line in lines)
    assert any(line.startswith("phases: ") and "tune" in line and "register" in line for line in lines)
