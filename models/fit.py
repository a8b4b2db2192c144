"""Fit the whole ensemble on a training frame, with no tracking server: split, tune, cross-fit, stack, calibrate, test.

`fit_ensemble` is what `leadscore train` runs between building the training set and logging to MLflow, and what
tests and benchmarks call directly on a frame read from a CSV. The phases:

1. **tune**: one Optuna study per member (models/tune.py), a trial scored on the held-out rows of every fold (the
   first fold only from 50,000 training rows), within a budget of seconds shared by all members (`budget`, by
   default growing with the rows): the cheap members go first and what one leaves unused passes to the next;
   trial 0 is always the member's defaults;
2. **cross-fit**: each member's out-of-fold log-odds on every training row (models/crossfit.py);
3. **stack**: non-negative stacker weights on the out-of-fold log-odds; members whose weight stays under
   `drop_below` are dropped from the registered model (their figures are still reported); the kept members are
   combined by the learned stacker or by their equal blend, whichever has the lower cross-validated log loss;
4. **calibrate**: platt or isotonic, chosen by cross-validated log loss over the out-of-fold rows; tier cut-offs from
   the calibrated out-of-fold scores;
5. **fit**: the kept members fitted once more on every training row; the bundle written (models/ensemble.py loads
   it) and the test rows scored through that loaded bundle, so the test figures are those of the registered files.

The ensemble's own cross-validated figures (stacker and calibration fitted without each row) are compared with each
member's out-of-fold figures: an ensemble below its best member is said in `warnings` (and tagged on the version).
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

from models.crossfit import CrossFit, cross_fit, fit_final, make_folds, member_data
from models.ensemble import LeadScorerEnsemble, calibrate, sigmoid
from models.evaluate import metrics
from models.members import Fitted, registry
from models.preprocess import FeatureSchema, fit_schema
from models.split import Split, SplitSpec, split_frame
from models.stack import COMBINERS, choose_calibration, choose_combiner, fit_isotonic, fit_stacker, tier_thresholds
from models.tune import StudyResult, tune_member

NOT_FEATURES = ("lead_id", "event_timestamp", "label", "created_at")
MEMBERS = ("linear", "lightgbm", "xgboost", "mlp")  # the tuning order: cheap members first
BELOW_MEMBER_AUC = 0.001  # the ensemble's CV ROC AUC this far below a member's is said and tagged


@dataclass
class FitOptions:
    members: tuple[str, ...] = MEMBERS
    trials: int = 100  # per member at most (the budget is what usually ends a study); 0 = defaults, no tuning
    budget: float | None = None  # seconds of tuning for all members together; None = by the rows (auto_budget)
    timeout: float | None = None  # seconds of tuning per member at most
    folds: int | None = None  # cross-fitting folds; None = by the rows (auto_folds)
    seed: int = 0
    max_epochs: int = 100  # MLP
    split: SplitSpec = field(default_factory=SplitSpec)
    threads: int = field(default_factory=lambda: os.cpu_count() or 2)
    increasing: tuple[str, ...] = ()  # numeric features the score must never fall with (monotone constraints)
    params: dict[str, dict] | None = None  # fixed parameters per member: no tuning (what --refit-all reuses)
    drop_below: float = 1e-3  # stacker weight under which a member is not registered
    progress: bool = True


@dataclass
class FitResult:
    bundle: Path
    ensemble: LeadScorerEnsemble
    split: Split
    schema: FeatureSchema
    fitted: dict[str, Fitted]  # the registered members, fitted on every training row
    studies: dict[str, StudyResult]
    crossfits: dict[str, CrossFit]  # every member, dropped ones included
    test_scores: pd.DataFrame  # score and p_<member> per test row
    test_metrics: dict[str, dict[str, float]]  # "ensemble" and each registered member -> metrics (empty: no test)
    cv_metrics: dict[str, dict[str, float]]  # out-of-fold: "ensemble" and every member
    first_weights: dict[str, float]  # the stacker over every member, before dropping
    dropped: list[str]
    calibration_losses: dict[str, float]
    seconds: dict[str, float]  # per phase and "total"
    warnings: list[str] = field(default_factory=list)


def feature_columns(frame: pd.DataFrame, marker: str | None = None) -> list[str]:
    return [c for c in frame.columns if c not in NOT_FEATURES and c != marker]


def auto_budget(rows: int) -> float:
    """Seconds of tuning for all members: 30 s plus 1 s per 400 training rows, at most 15 minutes."""
    return float(min(900.0, 30.0 + rows / 400))


def auto_folds(rows: int) -> int:
    """5 folds below 200,000 training rows, 3 below 1,000,000, 2 beyond: on large sets one fold's predictions
    already pin the stacker's weights down, and each fold costs a fit of every member."""
    return 5 if rows < 200_000 else 3 if rows < 1_000_000 else 2


TUNE_ON_EVERY_FOLD = 50_000  # below this many training rows a trial is scored on every fold, else on the first


def _tune(names: list[str], folds: list, rows: int, options: FitOptions,  # noqa: ANN001 - [(MemberData, frame)]
          say: Callable[[str], None]) -> dict[str, StudyResult]:
    members = registry()
    budget = options.budget if options.budget is not None else auto_budget(rows)
    deadline = time.monotonic() + budget
    studies = {}
    for i, name in enumerate(names):
        fixed = (options.params or {}).get(name)
        if fixed is not None:
            studies[name] = StudyResult(name, dict(fixed), None)
            continue
        share = max(0.0, deadline - time.monotonic()) / (len(names) - i)
        timeout = min(share, options.timeout) if options.timeout else share
        studies[name] = tune_member(members[name], folds, options.trials if timeout > 1 else 0, timeout,
                                    options.seed, options.progress)
        if studies[name].trials:
            say(f"  tuned {name}: {len(studies[name].trials)} trials ({studies[name].pruned} pruned) in "
                f"{studies[name].seconds:.0f} s, held-out log loss {studies[name].best_value:.4f} "
                f"({len(folds)} fold{'s' if len(folds) > 1 else ''})"
                + (f"; {studies[name].defaults_kept}" if studies[name].defaults_kept else ""))
    return studies


def fit_ensemble(frame: pd.DataFrame, out_dir: Path, feature_service: str = "", options: FitOptions | None = None,
                 say: Callable[[str], None] = lambda _msg: None, split: Split | None = None) -> FitResult:
    """Tune, cross-fit, stack and calibrate the members and write the bundle to out_dir (see the module docstring).

    `split` overrides options.split (benchmarks pass their own); its test part may be empty (no test figures)."""
    options = options or FitOptions()
    unknown = sorted(set(options.members) - set(MEMBERS))
    if unknown or not options.members:
        raise ValueError(f"unknown member(s) {unknown or '(none given)'}: choose from {list(MEMBERS)}")
    names = [m for m in MEMBERS if m in options.members]
    seconds: dict[str, float] = {}
    t0 = clock = time.monotonic()

    def phase(name: str) -> None:
        nonlocal clock
        seconds[name] = seconds.get(name, 0.0) + time.monotonic() - clock
        clock = time.monotonic()

    split = split or split_frame(frame, options.split)
    train = split.train
    schema = fit_schema(train, feature_columns(frame, split.marker))
    if not schema.features:
        raise ValueError("the training set has no feature columns besides lead_id, event_timestamp and label")
    wrong = [f for f in options.increasing if f not in schema.numeric]
    if wrong:
        raise ValueError(f"--increasing {','.join(wrong)}: not numeric features of this training set; "
                         f"choose from {schema.numeric}")
    say(f"split {split.method} ({split.detail}): train {len(train)}, test {len(split.test)}; "
        f"{len(schema.features)} features ({len(schema.categorical)} categorical)"
        + (f"; not used: {', '.join(schema.dropped)}" if schema.dropped else ""))
    k = options.folds or auto_folds(len(train))
    folds = make_folds(train, k, by_time=split.method == "time")
    tune_folds = [(member_data(schema, train.loc[folds.fit_rows[k]], train.loc[folds.stop_rows[k]], options),
                   train.loc[folds.held_out[k]]) for k in range(k if len(train) < TUNE_ON_EVERY_FOLD else 1)]
    studies = _tune(names, tune_folds, len(train), options, say)
    phase("tune")

    members, y = registry(), train["label"].to_numpy("int64")
    crossfits = {}
    for name in names:
        crossfits[name] = cross_fit(members[name], studies[name].best_params, train, folds, schema, options,
                                    options.seed)
        say(f"  cross-fitted {name}: {k} folds, out-of-fold log loss "
            f"{np.mean(crossfits[name].fold_losses):.4f} ({crossfits[name].seconds:.0f} s)")
    phase("fit")

    oof = {m: c.oof_logit for m, c in crossfits.items()}
    first_weights, _ = fit_stacker(oof, y)
    kept = [m for m in names if first_weights[m] >= options.drop_below]
    if not kept:  # every weight at zero: keep the member with the best out-of-fold log loss
        kept = [min(names, key=lambda m: np.mean(crossfits[m].fold_losses))]
    dropped = [m for m in names if m not in kept]
    combiner, combiner_losses = choose_combiner({m: oof[m] for m in kept}, y, seed=options.seed)
    weights, intercept = COMBINERS[combiner]({m: oof[m] for m in kept}, y)
    phase("stack")
    method, losses, oof_scores = choose_calibration({m: oof[m] for m in kept}, y, seed=options.seed,
                                                    combiner=combiner)
    z = intercept + sum(weights[m] * oof[m] for m in kept)
    calibration = fit_isotonic(sigmoid(z), y) if method == "isotonic" else {"method": "platt"}
    cv_metrics = {"ensemble": metrics(y, oof_scores[method])}
    cv_metrics |= {m: metrics(y, sigmoid(oof[m])) for m in names}
    phase("calibrate")

    bundle = Path(out_dir) / "bundle"
    bundle.mkdir(parents=True, exist_ok=True)
    schema.save(bundle / "schema.json")
    fitted: dict[str, Fitted] = {}
    mean_logit = 0.0
    for name in kept:
        fitted[name], data = fit_final(members[name], studies[name].best_params, train, schema, crossfits[name],
                                       folds, options, options.seed)
        members[name].save(fitted[name], bundle)
        if name == "mlp":
            mean_logit = float(np.mean(members[name].predict(fitted[name], data, train)))
    meta = {"members": kept, "weights": weights, "intercept": intercept, "combiner": combiner,
            "combiner_cv_log_loss": combiner_losses, "calibration": calibration,
            "calibration_cv_log_loss": losses, "tier_thresholds": tier_thresholds(calibrate(z, calibration)),
            "feature_service": feature_service, "mlp_mean_logit": mean_logit,
            "best_iterations": {m: f.best_iteration for m, f in fitted.items()},
            "params": {m: studies[m].best_params for m in kept}, "split": split.method, "folds": k,
            "train_rows": len(train),
            "dropped": {m: first_weights[m] for m in dropped}, "increasing": list(options.increasing),
            "trained_at": pd.Timestamp.now(tz="UTC").isoformat()}
    (bundle / "ensemble.json").write_text(json.dumps(meta, indent=1, default=float))
    say(f"ensemble: {'stacked' if combiner == 'stacker' else 'equal blend'} (cross-validated log loss stacker "
        f"{combiner_losses['stacker']:.4f}, equal blend {combiner_losses['equal']:.4f}); weights "
        + ", ".join(f"{m} {w:.2f}" for m, w in weights.items())
        + (f"; dropped (weight 0): {', '.join(dropped)}" if dropped else "")
        + f"; calibration {method} (cross-validated log loss platt {losses['platt']:.4f}, "
        f"isotonic {losses['isotonic']:.4f})")
    warnings = []
    best = max(names, key=lambda m: cv_metrics[m]["roc_auc"])
    if cv_metrics["ensemble"]["roc_auc"] < cv_metrics[best]["roc_auc"] - BELOW_MEMBER_AUC:
        warnings.append(f"the ensemble's cross-validated ROC AUC {cv_metrics['ensemble']['roc_auc']:.4f} is below "
                        f"its best member's ({best} {cv_metrics[best]['roc_auc']:.4f})")
    ensemble = LeadScorerEnsemble.from_bundle(bundle)
    test_scores, test_metrics = pd.DataFrame(index=split.test.index), {}
    if len(split.test):
        test_scores = ensemble.score(split.test)
        y_test = split.test["label"].to_numpy("int64")
        test_metrics = {"ensemble": metrics(y_test, test_scores["score"].to_numpy())}
        test_metrics |= {m: metrics(y_test, test_scores[f"p_{m}"].to_numpy()) for m in fitted}
    phase("fit")
    seconds["total"] = time.monotonic() - t0
    return FitResult(bundle, ensemble, split, schema, fitted, studies, crossfits, test_scores, test_metrics,
                     cv_metrics, first_weights, dropped, losses, seconds, warnings)
