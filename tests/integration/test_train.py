"""`leadscore train` and `leadscore promote` against the real stack: Feast set -> MLflow runs -> registry aliases."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from infra.config import Settings
from tests.conftest import REPO, SHARED_DATA, leadscore

pytestmark = [pytest.mark.integration, pytest.mark.slow]
MODEL = "lead-scorer-it"  # a name of its own, so other tests' registrations cannot interfere
# a timeout far above what 2 trials take, so a busy machine cannot cut a study short and change what is asserted
TRAIN = ["train", "--feature-service", "xeducation_v1", "--budget", "1200", "--max-epochs", "20", "--model-name",
         MODEL, "--increasing", "time_on_website_s", "--no-progress"]
MEMBERS = ("linear", "lightgbm", "xgboost", "mlp")

LOAD_IN_A_FRESH_PROCESS = """
import json, sys
import mlflow
import pandas as pd
model = mlflow.pyfunc.load_model(sys.argv[1])
scorer = model.unwrap_python_model()
rows = pd.read_parquet(sys.argv[2])[scorer.feature_names].head(5)
rows.iloc[0, 0] = None
out = model.predict(rows)
import models.ensemble
print(json.dumps({"columns": list(out.columns), "scores": out["score"].tolist(),
                  "features": scorer.feature_names, "tiers": scorer.tier_thresholds,
                  "weights": scorer.weights, "service": scorer.feature_service,
                  "explain": scorer.explain(rows, top_k=3)[1]["top_positive"],
                  "code": models.ensemble.__file__,
                  "training_modules": [m for m in ("models.train", "models.fit", "optuna", "pipelines")
                                       if m in sys.modules]}, default=str))
"""


@pytest.fixture(scope="module")
def ingested(settings: Settings, applied_store) -> None:  # noqa: ANN001
    from pipelines.ingest import ingest_crm
    from pipelines.spec import load_spec

    spec = load_spec(REPO / "feature_repo/datasets/xeducation.yaml")
    ingest_crm(settings, SHARED_DATA / "xeducation_Leads.csv", spec, progress=False)


@pytest.fixture(scope="module")
def client(settings: Settings):  # noqa: ANN201 - MlflowClient
    from mlflow import MlflowClient

    return MlflowClient(settings.tracking_uri)


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = leadscore(args, env, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def test_train_tracks_registers_and_promote_moves_the_champion(stack_env_vars: dict[str, str], settings: Settings,
                                                               ingested, client, tmp_path: Path) -> None:  # noqa: ANN001
    done = _run([*TRAIN, "--trials", "2"], stack_env_vars)
    assert "data validation passed" in done.stdout and "as @challenger" in done.stdout
    first = client.get_model_version_by_alias(MODEL, "challenger")
    run = client.get_run(first.run_id)
    assert run.data.params["feature_service"] == "xeducation_v1"
    assert run.data.tags["leadscore.feature_service"] == "xeducation_v1"
    assert run.data.metrics["test_roc_auc"] >= 0.85
    kept = first.tags["members"].split(",")
    assert kept and set(kept) <= set(MEMBERS)
    for key in ("test_pr_auc", "test_log_loss", "test_brier", "test_ece", "test_precision_at_10", "test_recall_at_20",
                "test_lift_decile_1", "cv_roc_auc", *(f"cv_{m}_roc_auc" for m in MEMBERS),
                *(f"test_{m}_roc_auc" for m in kept), "seconds_tune", "seconds_register", "seconds_total"):
        assert key in run.data.metrics, key
    assert [a.path for a in client.list_artifacts(run.info.run_id, "logs")]  # library output went to the run's log
    assert run.inputs.dataset_inputs and run.inputs.dataset_inputs[0].dataset.name == "xeducation_v1"
    plots = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "plots")}
    assert plots == {"roc.png", "pr.png", "calibration.png", "lift_gains.png", "feature_importance.png",
                     "shap_summary.png"}
    assert [a.path for a in client.list_artifacts(run.info.run_id, "holdout")] == ["holdout/test.parquet"]
    children = client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}'")
    names = {c.info.run_name for c in children}
    assert names == {f"{kind} {m}" for kind in ("study", "member") for m in MEMBERS}
    studies = [c for c in children if c.info.run_name.startswith("study")]
    assert all(c.data.params["trials"] == "2" for c in studies)
    dropped = {c.info.run_name.split()[1] for c in children if c.data.tags.get("leadscore.dropped")}
    assert dropped == set(MEMBERS) - set(kept)  # a dropped member is still logged, with its figures
    member_models = client.search_logged_models([run.info.experiment_id])
    assert len(member_models) >= 1 + len(set(kept) - {"linear"})  # kept members in their own flavors, the ensemble
    assert first.tags["data_validation"] == "passed" and first.tags["feature_service"] == "xeducation_v1"

    done = _run(["promote", "--model-name", MODEL], stack_env_vars)
    assert f"promoted version {first.version} as @champion" in done.stdout and "no champion yet" in done.stdout
    assert client.get_model_version_by_alias(MODEL, "champion").version == first.version

    # a second version that must beat the champion by 0.5 ROC AUC cannot: the champion stays, the refusal is recorded
    _run([*TRAIN, "--trials", "0"], stack_env_vars)
    second = client.get_model_version_by_alias(MODEL, "challenger")
    assert second.version != first.version
    done = _run(["promote", "--model-name", MODEL, "--min-auc-gain", "0.5"], stack_env_vars)
    assert f"kept version {first.version} as @champion" in done.stdout, done.stdout
    assert client.get_model_version_by_alias(MODEL, "champion").version == first.version
    tags = client.get_model_version(MODEL, second.version).tags
    assert tags["promotion.decision"] == "rejected" and tags["promotion.compared_with"] == first.version
    assert float(tags["promotion.challenger_roc_auc"]) > 0.85 and float(tags["promotion.champion_roc_auc"]) > 0.85
    done = _run(["promote", "--model-name", MODEL], stack_env_vars)  # default thresholds: as good is enough
    promoted = client.get_model_version_by_alias(MODEL, "champion").version == second.version
    assert promoted == ("promoted" in done.stdout.split(":")[1])

    holdout = Path(client.download_artifacts(second.run_id, "holdout/test.parquet", str(tmp_path)))
    env = {**stack_env_vars, **settings.mlflow_env()}
    fresh = subprocess.run([sys.executable, "-c", LOAD_IN_A_FRESH_PROCESS, f"models:/{MODEL}@champion", str(holdout)],
                           env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    out = json.loads(fresh.stdout.strip().splitlines()[-1])
    assert out["columns"] == ["score", *(f"p_{m}" for m in out["weights"])]
    assert len(out["scores"]) == 5 and all(0 < s < 1 for s in out["scores"])
    assert out["service"] == "xeducation_v1" and set(out["tiers"]) == set("ABCD") and len(out["features"]) == 25
    assert all(contribution > 0 for _, _, contribution in out["explain"])
    assert str(REPO) not in out["code"]  # the model's own copy of the serving code, not this checkout
    assert out["training_modules"] == []
