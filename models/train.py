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
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stderr
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from infra.config import REPO_ROOT, Settings
from models.fit import FitOptions, FitResult, fit_ensemble
from models.split import Split
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
    result: FitResult  # what was registered (the refit with --refit-all)
    report_path: Path
    estimate: FitResult | None = None  # the fit whose held-out figures were logged
    seconds: dict[str, float] = field(default_factory=dict)  # per phase and "total"


def configure_mlflow(settings: Settings) -> None:
    """Point MLflow at the configured server and experiment (read now, never at import)."""
    import mlflow

    from models.registry import unavailable
    from models.unfinished import settle

    os.environ.update(settings.mlflow_env())
    mlflow.set_tracking_uri(settings.tracking_uri)
    try:
        mlflow.set_experiment(settings.experiment_name)
    except mlflow.exceptions.MlflowException as exc:
        raise unavailable(exc, settings.tracking_uri) from None
    settle(settings)  # runs an earlier command could not mark failed (the registry was down then)


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
          say: Callable[[str], None] = print, refit_all: bool = False, tenant: str | None = None,
          all_tenants: bool = False) -> TrainOutcome:
    """Build the feature service's point-in-time training set from Feast and train on it (see train_frame): one
    tenant's leads (`tenant`) or, as an explicit choice, every tenant's (`all_tenants`; compliance/tenants.py)."""
    from compliance.tenants import choose_tenants
    from pipelines.training_data import build_training_set

    t0 = time.monotonic()
    with captured_library_output(settings.state_dir / "logs" / "train-load.log"):
        frame = build_training_set(settings, feature_service, dataset)
    frame, tenants = choose_tenants(frame, tenant, all_tenants)
    frame = frame.reset_index(drop=True)
    load = time.monotonic() - t0
    say(f"training set: {len(frame)} rows ({int(frame['label'].sum())} positive), "
        f"{len(frame.columns) - 3} features from {feature_service} ({load:.1f} s)")
    return train_frame(settings, frame, feature_service, options, dataset, model_name, suite, say, refit_all,
                       {"load": load}, tenants=tenants)


def train_frame(settings: Settings, frame: pd.DataFrame, feature_service: str, options: FitOptions | None = None,
                dataset: str | None = None, model_name: str | None = None, suite: SuiteOptions | None = None,
                say: Callable[[str], None] = print, refit_all: bool = False,
                seconds: dict[str, float] | None = None, reference: bool = True,
                tenants: str | None = None) -> TrainOutcome:
    """Validate, fit and track one training; register the ensemble with alias `challenger`.

    With `refit_all`, once the held-out estimate is logged the chosen configuration (tuned parameters, members) is
    fitted again on every labelled row, test rows included, and that model is registered, carrying the estimate's
    held-out figures (the run and the version say so). With `reference` (the default) the rows the version learnt
    from are kept as its monitoring reference (monitoring/reference.py) and its lineage (compliance/lineage.py: which
    leads it learned from, for erasure); PostgreSQL must be up."""
    from compliance.tenants import tenants_of

    options = options or FitOptions()
    seconds = dict(seconds or {})
    tenants = tenants or ",".join(sorted(set(tenants_of(frame["lead_id"]))))
    model_name = model_name or settings.model_name
    dataset = dataset or feature_service.rsplit("_v", 1)[0]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    clock = time.monotonic()
    report_path = validate_or_stop(frame, settings.state_dir / "reports" / f"validation-{feature_service}-{stamp}.json",
                                   dataset, suite)
    seconds["validate"] = time.monotonic() - clock
    say(f"data validation passed ({report_path.name})")
    log_path = settings.state_dir / "logs" / f"train-{stamp}.log"
    with tempfile.TemporaryDirectory(prefix="leadscore-train-") as tmp, captured_library_output(log_path):
        with quiet(log_path):
            configure_mlflow(settings)
        started: list[str] = []
        try:
            return _tracked(settings, frame, feature_service, options, dataset, model_name, say, refit_all, seconds,
                            report_path, log_path, Path(tmp), stamp, reference, tenants, started)
        except BaseException as exc:
            if started:  # the run is FAILED and no version of it stays registered (now, or at the next command)
                from models.registry import is_unreachable, unavailable
                from models.unfinished import fail_run

                fail_run(settings, started[0])
                if isinstance(exc, Exception) and is_unreachable(exc):
                    raise unavailable(exc, settings.tracking_uri) from None
            raise


def _tracked(settings: Settings, frame: pd.DataFrame, feature_service: str, options: FitOptions, dataset: str,
             model_name: str, say: Callable[[str], None], refit_all: bool, seconds: dict[str, float],
             report_path: Path, log_path: Path, tmp_path: Path, stamp: str, reference: bool,
             tenants: str, started: list[str]) -> TrainOutcome:
    import mlflow

    from models.register import input_example, log_ensemble, set_alias

    with mlflow.start_run(run_name=f"train {feature_service} {stamp}") as parent:
        started.append(parent.info.run_id)
        clock = time.monotonic()
        mlflow.set_tags({"leadscore.feature_service": feature_service, "leadscore.dataset": dataset,
                         "leadscore.step": "train", "leadscore.refit_all": str(refit_all).lower(),
                         "leadscore.tenants": tenants[:5000]})
        mlflow.log_params({"feature_service": feature_service, "dataset": dataset, "rows": len(frame),
                           "members": ",".join(options.members), "trials": options.trials,
                           "budget_s": options.budget if options.budget is not None else "auto",
                           "folds": options.folds or "auto", "seed": options.seed, "max_epochs": options.max_epochs,
                           "increasing": ",".join(options.increasing) or "-", "refit_all": refit_all,
                           "tenants": tenants[:500]})
        mlflow.log_input(mlflow.data.from_pandas(frame, name=feature_service, targets="label"), context="training")
        mlflow.log_artifact(str(report_path), "validation")
        seconds["log"] = time.monotonic() - clock
        result = fit_ensemble(frame, tmp_path / "estimate", feature_service, options, say)
        seconds |= {k: v for k, v in result.seconds.items() if k != "total"}
        clock = time.monotonic()
        mlflow.log_params({"split": result.split.method, "split_detail": result.split.detail[:500],
                           **{f"{k}_rows": v for k, v in result.split.sizes().items()},
                           "features": len(result.schema.features), "categorical": len(result.schema.categorical),
                           "calibration": result.ensemble.calibration["method"],
                           "dropped_members": ",".join(result.dropped) or "-"})
        holdout = tmp_path / "holdout" / "test.parquet"
        holdout.parent.mkdir()
        result.split.test.to_parquet(holdout, index=False)
        mlflow.log_artifact(str(holdout), "holdout")
        with quiet(log_path):
            _log_members(result, tmp_path)
            _log_metrics(result)
            plots = _log_plots(result, tmp_path)
        say("plots: " + ", ".join(p.name for p in plots))
        seconds["log"] += time.monotonic() - clock
        final = result
        if refit_all:
            final = _refit_all(result, frame, feature_service, options, tmp_path, say)
            seconds["refit"] = final.seconds["total"]
        clock = time.monotonic()
        for warning in result.warnings:
            say(f"warning: {warning}")
        with quiet(log_path):  # MLflow's own prints ("Successfully registered ...") and upload bars
            info = log_ensemble(final.bundle, input_example(final.split.train, final.schema), model_name)
        version = str(info.registered_model_version)
        if reference and "lead_id" in frame.columns:  # who this version learned from (compliance/lineage.py)
            from compliance.lineage import record_lineage

            record_lineage(settings, model_name, parent.info.run_id, frame["lead_id"])
        kept = _record_reference(settings, model_name, parent.info.run_id, final) if reference else None
        ens = result.test_metrics["ensemble"]
        tags = {"feature_service": feature_service, "dataset": dataset, "run_id": parent.info.run_id,
                "test_roc_auc": f"{ens['roc_auc']:.4f}", "test_log_loss": f"{ens['log_loss']:.4f}",
                "data_validation": "passed", "refit_all": str(refit_all).lower(),
                "members": ",".join(final.ensemble.members),
                "reference_rows": str(kept["stored"]["rows"]) if kept else "none", "tenants": tenants[:5000]}
        if result.warnings:
            tags["warning"] = "; ".join(result.warnings)
            mlflow.set_tag("leadscore.warning", tags["warning"])
        set_alias(model_name, version, "challenger", tags)
        seconds["register"] = time.monotonic() - clock
        seconds["total"] = sum(seconds.values())
        mlflow.log_metrics({f"seconds_{k}": v for k, v in seconds.items()})
        mlflow.log_artifact(str(log_path), "logs")
        say("phases: " + ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items() if k != "total"))
        say(f"registered {model_name} version {version} as @challenger (run {parent.info.run_id})"
            + (": refitted on every labelled row; its held-out figures are the estimate's" if refit_all else ""))
        return TrainOutcome(parent.info.run_id, parent.info.experiment_id, model_name, version, final, report_path,
                            result, seconds)


def _record_reference(settings: Settings, model_name: str, run_id: str, final: FitResult) -> dict:
    """The version's monitoring reference (monitoring/reference.py): rows to PostgreSQL, the summary to the run."""
    import mlflow

    from monitoring.reference import record_reference

    summary = record_reference(settings, model_name, run_id, final)
    mlflow.log_dict(summary, "monitoring/reference_summary.json")
    mlflow.log_param("reference_rows", summary["stored"]["rows"])
    return summary


def _refit_all(result: FitResult, frame: pd.DataFrame, feature_service: str, options: FitOptions, tmp: Path,
               say: Callable[[str], None]) -> FitResult:
    """The estimate's configuration fitted on every labelled row (no test part), logged as refit_* metrics."""
    import mlflow

    rows = pd.concat([result.split.train, result.split.test])
    everything = Split(rows, rows.iloc[:0], "all", f"every labelled row ({len(rows)}), after the estimate",
                       result.split.marker)
    fixed = replace(options, members=tuple(result.fitted), trials=0,
                    params={m: result.studies[m].best_params for m in result.fitted})
    say(f"refit on every labelled row ({len(rows)}) with the estimate's members and parameters")
    refit = fit_ensemble(frame, tmp / "refit", feature_service, fixed, say, split=everything)
    mlflow.log_metrics({"refit_cv_roc_auc": refit.cv_metrics["ensemble"]["roc_auc"],
                        "refit_cv_log_loss": refit.cv_metrics["ensemble"]["log_loss"], "refit_rows": len(rows)})
    mlflow.log_dict(json.loads((refit.bundle / "ensemble.json").read_text()), "refit/ensemble.json")
    return refit


@contextmanager
def quiet(path: Path) -> Iterator[None]:
    """What libraries print to stderr (MLflow's messages, artifact progress bars) appended to `path`."""
    with open(path, "a") as log, redirect_stderr(log):
        yield


@contextmanager
def captured_library_output(path: Path) -> Iterator[None]:
    """Python warnings and library loggers (MLflow, Optuna, Feast, ...) go to `path`, not the terminal."""
    import logging

    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    names = ["", "mlflow", "optuna", "feast", "alembic", "urllib3", "py.warnings", "great_expectations"]
    saved = {}
    for name in names:
        logger = logging.getLogger(name)
        saved[name] = (logger.handlers[:], logger.propagate)
        logger.handlers = [handler]
        logger.propagate = name == "" or False
    logging.captureWarnings(True)
    try:
        with warnings.catch_warnings():
            yield
    finally:
        logging.captureWarnings(False)
        for name, (handlers, propagate) in saved.items():
            logger = logging.getLogger(name)
            logger.handlers, logger.propagate = handlers, propagate
        handler.close()


def _log_members(result: FitResult, tmp: Path) -> None:
    """A nested run per Optuna study and per member; each registered member logged with its own MLflow flavor, a
    dropped one with its cross-validated figures only."""
    import mlflow

    from models.register import pip_requirements, serving_code

    reqs = pip_requirements()
    for name, crossfit in result.crossfits.items():
        study = result.studies[name]
        if study.trials:
            with mlflow.start_run(run_name=f"study {name}", nested=True):
                mlflow.set_tag("leadscore.step", "tune")
                if study.defaults_kept:  # the best trial did not beat the defaults beyond chance
                    mlflow.set_tag("leadscore.defaults_kept", study.defaults_kept)
                mlflow.log_params({"member": name, "trials": len(study.trials), "pruned": study.pruned,
                                   "seconds": round(study.seconds, 1),
                                   **{f"best_{k}": v for k, v in study.best_params.items()}})
                _log_series("trial_valid_log_loss", {t["number"]: t["value"] for t in study.trials
                                                     if t["value"] is not None})
                if study.best_value is not None:
                    mlflow.log_metric("best_valid_log_loss", study.best_value)
                mlflow.log_dict({"trials": study.trials}, "trials.json")
        fitted = result.fitted.get(name)
        with mlflow.start_run(run_name=f"member {name}", nested=True):
            mlflow.set_tags({"leadscore.step": "member", "leadscore.registered": str(fitted is not None).lower()})
            mlflow.log_params({"member": name, **study.best_params, "fold_rounds": str(crossfit.fold_rounds),
                               "stacker_weight_all_members": round(result.first_weights[name], 4)})
            mlflow.log_metrics({f"cv_{k}": v for k, v in result.cv_metrics[name].items() if k in HEADLINE})
            if fitted is None:
                mlflow.set_tag("leadscore.dropped", "stacker weight 0 after cross-fitting")
                continue
            mlflow.log_param("best_iteration", fitted.best_iteration)
            mlflow.log_metrics({f"test_{k}": v for k, v in result.test_metrics[name].items() if k in HEADLINE})
            if name == "xgboost":
                mlflow.xgboost.log_model(fitted.model, name="model", pip_requirements=reqs)
            elif name == "lightgbm":
                mlflow.lightgbm.log_model(fitted.model, name="model", pip_requirements=reqs)
            elif name == "mlp":
                code = serving_code(tmp / "mlp_code")
                mlflow.pytorch.log_model(fitted.model, name="model", pip_requirements=reqs, code_paths=[str(code)],
                                         serialization_format="pickle")
            else:  # the linear member: its coefficients, readable as they are
                mlflow.log_dict(json.loads((result.bundle / "linear.json").read_text()), "model/linear.json")


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
    for name, values in result.cv_metrics.items():
        prefix = "cv_" if name == "ensemble" else f"cv_{name}_"
        mlflow.log_metrics({prefix + k: v for k, v in values.items() if k in HEADLINE})
    mlflow.log_metrics({f"weight_{m}": w for m, w in result.ensemble.weights.items()})
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
