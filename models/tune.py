"""Optuna tuning of one member within a budget: trials and a timeout, TPE sampling, median pruning.

The first trial is always the member's default parameters, so a tuned member is never worse on validation than
the untuned one. The objective is the log loss on the early-stopping rows after a Platt recalibration of the
member's log-odds on them: the stacker and the calibration rescale every member anyway, so a trial is judged by how
well it separates converters, not by its scale (a class-weighted booster is not penalised for its shifted scores).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from models.members import Member, MemberData


@dataclass
class StudyResult:
    member: str
    best_params: dict
    best_value: float | None
    trials: list[dict] = field(default_factory=list)  # number, state, value, params, seconds
    seconds: float = 0.0

    @property
    def pruned(self) -> int:
        return sum(t["state"] == "PRUNED" for t in self.trials)


def recalibrated_log_loss(y: np.ndarray, z: np.ndarray) -> float:
    """Log loss of sigmoid(a * z + b) with a >= 0 and b fitted on these rows (a two-parameter Platt scaling)."""
    from models.stack import _loss, fit_stacker

    weights, intercept = fit_stacker({"member": z}, y)
    return _loss(np.asarray(y, "float64"), intercept + weights["member"] * z)


def tune_member(member: Member, folds: list[tuple[MemberData, pd.DataFrame]], trials: int, timeout: float | None,
                seed: int = 0, progress: bool = True) -> StudyResult:
    """Search `member`'s space for at most `trials` trials or `timeout` seconds; trials=0 returns the defaults.

    `folds` are (the fold's fitting and early-stopping rows, its held-out rows): a trial is scored on the held-out
    rows of every fold given (the recalibrated log loss of all of them together), so on small data, where one
    slice holds few converters, the choice rests on every training row rather than on noise."""
    t0 = time.monotonic()
    if trials <= 0:
        return StudyResult(member.name, member.defaults(), None, seconds=0.0)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=f"tune-{member.name}", direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=5 if len(folds) == 1 else 0))
    study.enqueue_trial(member.defaults())

    def objective(trial: optuna.Trial) -> float:
        data = folds[0][0]
        params = member.suggest(trial, data) if trial.number > 0 else {**member.defaults(), **trial.params}
        ys, zs = [], []
        for k, (fold, held) in enumerate(folds):
            # one fold: the member reports its rounds to the pruner; several: the running score after each fold
            fitted = member.fit(fold, params, seed=seed, trial=trial if len(folds) == 1 else None)
            ys.append(held["label"].to_numpy("int64"))
            zs.append(member.predict(fitted, fold, held))
            if len(folds) > 1 and k < len(folds) - 1:
                trial.report(recalibrated_log_loss(np.concatenate(ys), np.concatenate(zs)), k)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned after fold {k + 1}")
        trial.set_user_attr("params", params)
        return recalibrated_log_loss(np.concatenate(ys), np.concatenate(zs))

    study.optimize(objective, n_trials=trials, timeout=timeout, show_progress_bar=progress, gc_after_trial=True)
    rows = [{"number": t.number, "state": t.state.name, "value": t.value,
             "params": t.user_attrs.get("params", t.params),
             "seconds": (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete else None}
            for t in study.trials]
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        return StudyResult(member.name, member.defaults(), None, rows, time.monotonic() - t0)
    best = min(done, key=lambda t: t.value)
    return StudyResult(member.name, best.user_attrs["params"], best.value, rows, time.monotonic() - t0)
