"""`leadscore train`: a feature service's training set -> validated -> tuned, stacked, calibrated ensemble -> MLflow.

One parent run per training: params, the training set as an MLflow dataset input, the validation report, the
held-out test rows (`holdout/test.parquet`, what `leadscore promote` compares versions on), test and validation
metrics of the ensemble and of every member, and plots. Nested runs: one per Optuna study (a metric per trial) and
one per member (its own flavor: mlflow.xgboost, mlflow.lightgbm, mlflow.pytorch). The ensemble is logged as one
pyfunc model, registered under the model name, and the new version gets the alias `challenger`.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from infra.config import REPO_ROOT, Settings
from models.fit import FitOptions, FitResult, fit_ensemble
from models.validate import SuiteOptions, rules_for, validate_training_set

DATASETS_DIR = REPO_ROOT / "feature_repo" / "datasets"
HEADLINE = ("roc_auc", "pr_auc", "log_loss", "brier", "ece", "precision_at_10", "recall_at_10")


class DataValidationError(ValueError):
    """The training set failed its Great Expectations suite; the message is the summary and the report's path."""


@dataclass
class TrainOutcome:
    run_id: str
    experiment_id: str
    model_name: str
    version: str | None
    result: FitResult
    report_path: Path


def configure_mlflow(settings: Settings) -> None:
    """Point MLflow at the configured server and experiment (read now, never at import)."""
    import mlflow

    os.environ.update(settings.mlflow_env())
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_experiment(settings.experiment_name)


def validate_or_stop(frame: pd.DataFrame, report_path: Path, dataset: str | None,
                     suite: SuiteOptions | None) -> Path:
    """Run the suite; save its report; raise DataValidationError (one line) if it failed."""
    from pipelines.spec import load_all_specs

    report = validate_training_set(frame, rules_for(frame, load_all_specs(DATASETS_DIR), prefer=dataset), suite)
    report.save(report_path)
    if not report.success:
        raise DataValidationError(f"{report.summary()}. Training stopped; full report: {report_path}")
    return report_path


def train(settings: Settings, feature_service: str, options: FitOptions | None = None, dataset: str | None = None,
          model_name: str | None = None, suite: SuiteOptions | None = None,
          say: Callable[[str], None] = print) -> TrainOutcome:
    """Build the feature service's point-in-time training set from Feast and train on it (see train_frame)."""
    from pipelines.training_data import build_training_set

    t0 = time.monotonic()
    frame = build_training_set(settings, feature_service, dataset)
    say(f"training set: {len(frame)} rows ({int(frame['label'].sum())} positive), "
        f"{len(frame.columns) - 3} features from {feature_service} ({time.monotonic() - t0:.1f} s)")
    return train_frame(settings, frame, feature_service, options, dataset, model_name, suite, say)


def train_frame(settings: Settings, frame: pd.DataFrame, feature_service: str, options: FitOptions | None = None,
                dataset: str | None = None, model_name: str | None = None, suite: SuiteOptions | None = None,
                say: Callable[[str], None] = print) -> TrainOutcome:
    """Validate, fit and track one training; register the ensemble with alias `challenger`."""
    import mlflow

    from models.register import set_alias

    options = options or FitOptions()
    model_name = model_name or settings.model_name
    dataset = dataset or feature_service.rsplit("_v", 1)[0]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    report_path = validate_or_stop(frame, settings.state_dir / "reports" / f"validation-{feature_service}-{stamp}.json",
                                   dataset, suite)
    say(f"data validation passed ({report_path.name})")
    configure_mlflow(settings)
    with tempfile.TemporaryDirectory(prefix="leadscore-train-") as tmp, \
            mlflow.start_run(run_name=f"train {feature_service} {stamp}") as parent:
        tmp_path = Path(tmp)
        mlflow.set_tags({"leadscore.feature_service": feature_service, "leadscore.dataset": dataset,
                         "leadscore.step": "train"})
        mlflow.log_params({"feature_service": feature_service, "dataset": dataset, "rows": len(frame),
                           "members": ",".join(options.members), "trials": options.trials,
                           "timeout_s": options.timeout, "seed": options.seed, "max_epochs": options.max_epochs,
                           "increasing": ",".join(options.increasing) or "-"})
        mlflow.log_input(mlflow.data.from_pandas(frame, name=feature_service, targets="label"), context="training")
        mlflow.log_artifact(str(report_path), "validation")
        result = fit_ensemble(frame, tmp_path, feature_service, options, say)
        mlflow.log_params({"split": result.split.method, **{f"{k}_rows": v for k, v in result.split.sizes().items()},
                           "features": len(result.schema.features), "categorical": len(result.schema.categorical),
                           "calibration": result.ensemble.calibration["method"]})
        holdout = tmp_path / "holdout" / "test.parquet"
        holdout.parent.mkdir()
        result.split.test.to_parquet(holdout, index=False)
        mlflow.log_artifact(str(holdout), "holdout")
        _log_members(result, options, tmp_path)
        _log_metrics(result)
        say("plots: " + ", ".join(p.name for p in _log_plots(result, tmp_path)))
        from models.register import input_example, log_ensemble

        info = log_ensemble(result.bundle, input_example(result.split.test, result.schema.features),
                            model_name)
        version = str(info.registered_model_version)
        ens = result.test_metrics["ensemble"]
        set_alias(model_name, version, "challenger", {
            "feature_service": feature_service, "dataset": dataset, "run_id": parent.info.run_id,
            "test_roc_auc": f"{ens['roc_auc']:.4f}", "test_log_loss": f"{ens['log_loss']:.4f}",
            "data_validation": "passed"})
        say(f"registered {model_name} version {version} as @challenger (run {parent.info.run_id})")
        return TrainOutcome(parent.info.run_id, parent.info.experiment_id, model_name, version, result, report_path)


def _log_members(result: FitResult, options: FitOptions, tmp: Path) -> None:
    """A nested run per Optuna study and per member; each member logged with its own MLflow flavor."""
    import mlflow

    from models.register import pip_requirements, serving_code

    reqs = pip_requirements()
    for name, fitted in result.fitted.items():
        study = result.studies[name]
        if study.trials:
            with mlflow.start_run(run_name=f"study {name}", nested=True):
                mlflow.set_tag("leadscore.step", "tune")
                mlflow.log_params({"member": name, "trials": len(study.trials), "pruned": study.pruned,
                                   "timeout_s": options.timeout, "seconds": round(study.seconds, 1),
                                   **{f"best_{k}": v for k, v in study.best_params.items()}})
                _log_series("trial_valid_log_loss", {t["number"]: t["value"] for t in study.trials
                                                     if t["value"] is not None})
                if study.best_value is not None:
                    mlflow.log_metric("best_valid_log_loss", study.best_value)
                mlflow.log_dict({"trials": study.trials}, "trials.json")
        with mlflow.start_run(run_name=f"member {name}", nested=True):
            mlflow.set_tag("leadscore.step", "member")
            mlflow.log_params({"member": name, "best_iteration": fitted.best_iteration, **fitted.params})
            mlflow.log_metrics({f"test_{k}": v for k, v in result.test_metrics[name].items() if k in HEADLINE})
            mlflow.log_metrics({f"valid_{k}": v for k, v in result.valid_metrics[name].items() if k in HEADLINE})
            _log_series("valid_log_loss_curve", dict(enumerate(fitted.history)))
            if name == "xgboost":
                mlflow.xgboost.log_model(fitted.model, name="model", pip_requirements=reqs)
            elif name == "lightgbm":
                mlflow.lightgbm.log_model(fitted.model, name="model", pip_requirements=reqs)
            else:
                code = serving_code(tmp / "mlp_code")
                mlflow.pytorch.log_model(fitted.model, name="model", pip_requirements=reqs, code_paths=[str(code)],
                                         serialization_format="pickle")


def _log_series(key: str, values: dict[int, float]) -> None:
    """One metric over steps in batches (one request per 1,000 points, not one per point)."""
    import mlflow
    from mlflow.entities import Metric

    run_id = mlflow.active_run().info.run_id
    now = int(time.time() * 1000)
    points = [Metric(key, float(v), now, int(step)) for step, v in values.items()]
    for start in range(0, len(points), 1000):
        mlflow.MlflowClient().log_batch(run_id, metrics=points[start:start + 1000])


def _log_metrics(result: FitResult) -> None:
    import mlflow

    for name, values in result.test_metrics.items():
        prefix = "test_" if name == "ensemble" else f"test_{name}_"
        mlflow.log_metrics({prefix + k: v for k, v in values.items() if name == "ensemble" or k in HEADLINE})
    for name, values in result.valid_metrics.items():
        prefix = "valid_" if name == "ensemble" else f"valid_{name}_"
        mlflow.log_metrics({prefix + k: v for k, v in values.items() if k in HEADLINE})
    mlflow.log_metrics({f"weight_{m}": w for m, w in result.ensemble.weights.items()})
    mlflow.log_metrics({f"seconds_{k}": v for k, v in result.seconds.items()})
    mlflow.log_dict(json.loads((result.bundle / "ensemble.json").read_text()), "ensemble.json")


def _log_plots(result: FitResult, tmp: Path) -> list[Path]:
    import mlflow
    import numpy as np

    from models.evaluate import plots
    from models.members import registry
    from models.preprocess import tree_frame

    y = result.split.test["label"].to_numpy("int64")
    scores = {"ensemble": result.test_scores["score"].to_numpy()}
    scores |= {m: result.test_scores[f"p_{m}"].to_numpy() for m in result.fitted}
    members = registry()
    importance = {m: imp for m, f in result.fitted.items()
                  if (imp := members[m].importance(f, result.schema.features))}
    shap_values = None
    if any(m in result.fitted for m in ("xgboost", "lightgbm")):
        sample = result.split.test.head(1000)
        explained = result.ensemble.explain(sample, top_k=0)
        matrix = np.array([[row["contributions"][f] for f in result.schema.features] for row in explained])
        shown = tree_frame(sample, result.schema)
        for c in result.schema.categorical:  # colour categoricals by their level code
            shown[c] = shown[c].cat.codes.replace(-1, np.nan).astype("float64")
        shap_values = (matrix, shown)
    paths = plots(y, scores, tmp / "plots", importance, shap_values)
    for p in paths:
        mlflow.log_artifact(str(p), "plots")
    return paths
