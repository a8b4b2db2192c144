"""Fit the whole ensemble on a training frame, with no tracking server: split, tune, fit, stack, calibrate, test.

`fit_ensemble` is what `leadscore train` runs between building the training set and logging to MLflow, and what
tests and benchmarks call directly on a frame read from a CSV. It writes the bundle directory that
models/ensemble.py loads, and scores the held-out test rows through that loaded bundle, so the reported test
metrics are those of the files that get registered.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from models.ensemble import LeadScorerEnsemble, calibrate
from models.evaluate import metrics
from models.members import Fitted, MemberData, registry
from models.preprocess import FeatureSchema, fit_schema
from models.split import Split, split_frame
from models.stack import choose_calibration, fit_isotonic, fit_stacker, tier_thresholds
from models.tune import StudyResult, tune_member

NOT_FEATURES = ("lead_id", "event_timestamp", "label", "created_at")
MEMBERS = ("xgboost", "lightgbm", "mlp")


@dataclass
class FitOptions:
    members: tuple[str, ...] = MEMBERS
    trials: int = 10  # per member; 0 = default parameters, no tuning
    timeout: float | None = 60.0  # seconds per member study
    seed: int = 0
    max_epochs: int = 100  # MLP
    valid: float = 0.2
    test: float = 0.2
    threads: int = field(default_factory=lambda: os.cpu_count() or 2)
    increasing: tuple[str, ...] = ()  # numeric features the score must never fall with (monotone constraints)
    progress: bool = True


@dataclass
class FitResult:
    bundle: Path
    ensemble: LeadScorerEnsemble
    split: Split
    schema: FeatureSchema
    fitted: dict[str, Fitted]
    studies: dict[str, StudyResult]
    test_scores: pd.DataFrame  # score and p_<member> per test row
    test_metrics: dict[str, dict[str, float]]  # "ensemble" and each member -> metrics
    valid_metrics: dict[str, dict[str, float]]
    calibration_losses: dict[str, float]
    seconds: dict[str, float]


def feature_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c not in NOT_FEATURES]


def fit_ensemble(frame: pd.DataFrame, out_dir: Path, feature_service: str = "", options: FitOptions | None = None,
                 say: Callable[[str], None] = lambda _msg: None, split: Split | None = None) -> FitResult:
    """Train every member (tuned within the budget), stack and calibrate them, and write the bundle to out_dir.

    `split` overrides the default split (cross-validation passes its own folds)."""
    options = options or FitOptions()
    unknown = sorted(set(options.members) - set(MEMBERS))
    if unknown or not options.members:
        raise ValueError(f"unknown member(s) {unknown or '(none given)'}: choose from {list(MEMBERS)}")
    seconds: dict[str, float] = {}
    t0 = time.monotonic()
    split = split or split_frame(frame, valid=options.valid, test=options.test)
    schema = fit_schema(split.train, feature_columns(frame))
    if not schema.features:
        raise ValueError("the training set has no feature columns besides lead_id, event_timestamp and label")
    say(f"split {split.method}: " + ", ".join(f"{k} {v}" for k, v in split.sizes().items())
        + f"; {len(schema.features)} features ({len(schema.categorical)} categorical)"
        + (f"; not used: {', '.join(schema.dropped)}" if schema.dropped else ""))
    wrong = [f for f in options.increasing if f not in schema.numeric]
    if wrong:
        raise ValueError(f"--increasing {','.join(wrong)}: not numeric features of this training set; "
                         f"choose from {schema.numeric}")
    data = MemberData(schema, split.train, split.valid, split.train["label"].to_numpy("int64"),
                      split.valid["label"].to_numpy("int64"), threads=options.threads, max_epochs=options.max_epochs,
                      increasing=tuple(options.increasing))
    bundle = Path(out_dir) / "bundle"
    bundle.mkdir(parents=True, exist_ok=True)
    schema.save(bundle / "schema.json")
    members = registry()
    fitted: dict[str, Fitted] = {}
    studies: dict[str, StudyResult] = {}
    for name in options.members:
        t1 = time.monotonic()
        study = tune_member(members[name], data, options.trials, options.timeout, options.seed, options.progress)
        studies[name] = study
        fitted[name] = members[name].fit(data, study.best_params, seed=options.seed)
        members[name].save(fitted[name], bundle)
        seconds[name] = time.monotonic() - t1
        tuned = f"{len(study.trials)} trials ({study.pruned} pruned), " if study.trials else "default parameters, "
        say(f"{name}: {tuned}best round/epoch {fitted[name].best_iteration}, "
            f"validation log loss {min(fitted[name].history):.4f} ({seconds[name]:.0f} s)")

    y_valid = data.y_valid
    logits = {m: f.valid_logit for m, f in fitted.items()}
    weights, intercept = fit_stacker(logits, y_valid)
    method, losses = choose_calibration(logits, y_valid, seed=options.seed)
    z_valid = intercept + sum(weights[m] * logits[m] for m in logits)
    calibration = fit_isotonic(1 / (1 + np.exp(-z_valid)), y_valid) if method == "isotonic" else {"method": "platt"}
    valid_scores = calibrate(z_valid, calibration)
    meta = {"members": list(fitted), "weights": weights, "intercept": intercept, "calibration": calibration,
            "calibration_cv_log_loss": losses, "tier_thresholds": tier_thresholds(valid_scores),
            "feature_service": feature_service, "mlp_mean_logit": float(np.mean(logits["mlp"])) if "mlp" in logits
            else 0.0, "best_iterations": {m: f.best_iteration for m, f in fitted.items()},
            "params": {m: f.params for m, f in fitted.items()}, "split": split.method,
            "increasing": list(options.increasing),
            "trained_at": pd.Timestamp.now(tz="UTC").isoformat()}
    (bundle / "ensemble.json").write_text(json.dumps(meta, indent=1, default=float))
    say("ensemble: weights " + ", ".join(f"{m} {w:.2f}" for m, w in weights.items())
        + f"; calibration {method} (cross-validated log loss platt {losses['platt']:.4f}, "
        f"isotonic {losses['isotonic']:.4f})")

    ensemble = LeadScorerEnsemble.from_bundle(bundle)
    test_scores = ensemble.score(split.test)
    y_test = split.test["label"].to_numpy("int64")
    test_metrics = {"ensemble": metrics(y_test, test_scores["score"].to_numpy())}
    valid_metrics = {"ensemble": metrics(y_valid, valid_scores)}
    for m in fitted:
        test_metrics[m] = metrics(y_test, test_scores[f"p_{m}"].to_numpy())
        valid_metrics[m] = metrics(y_valid, 1 / (1 + np.exp(-logits[m])))
    seconds["total"] = time.monotonic() - t0
    return FitResult(bundle, ensemble, split, schema, fitted, studies, test_scores, test_metrics, valid_metrics,
                     losses, seconds)
