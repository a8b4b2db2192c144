"""Optuna tuning of one member within a budget: trials and a timeout, TPE sampling, median pruning.

The first trial is always the member's default parameters, so a tuned member is never worse on validation than
the untuned one. The objective is the log loss on the early-stopping rows after a Platt recalibration of the
member's log-odds on them: the stacker and the calibration rescale every member anyway, so a trial is judged by how
well it separates converters, not by its scale (a class-weighted booster is not penalised for its shifted scores).

The defaults are kept unless the best trial beats them by more than chance would: the per-row differences of the
two trials' held-out log losses give the standard error of the gain, and the best of N trials that are no better
than the defaults still gains about sqrt(2 ln N) standard errors by chance (the expected maximum of N normal
draws). A gain below that is what picking the best of many trials on a few hundred converters finds by chance, so
on small data tuning costs nothing in quality; on large data the error is small and a tuned trial wins.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from models.members import Member, MemberData

NOISE_SE = 1.0  # at least this many standard errors of gain (times sqrt(2 ln N) for N trials) replace the defaults


@dataclass
class StudyResult:
    member: str
    best_params: dict
    best_value: float | None
    trials: list[dict] = field(default_factory=list)  # number, state, value, params, seconds
    seconds: float = 0.0
    defaults_kept: str = ""  # why the defaults were kept over the best trial ("" when they were not)

    @property
    def pruned(self) -> int:
        return sum(t["state"] == "PRUNED" for t in self.trials)


def recalibrated_losses(y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Per-row log loss of sigmoid(a * z + b) with a >= 0 and b fitted on these rows (a two-parameter Platt scaling)."""
    from models.stack import fit_stacker

    weights, intercept = fit_stacker({"member": z}, y)
    zz = intercept + weights["member"] * np.asarray(z, "float64")
    return np.logaddexp(0.0, np.where(np.asarray(y) > 0, -zz, zz))


def recalibrated_log_loss(y: np.ndarray, z: np.ndarray) -> float:
    """The mean of `recalibrated_losses`."""
    return float(np.mean(recalibrated_losses(y, z)))


def within_noise(defaults: np.ndarray, best: np.ndarray, trials: int = 1, se: float = NOISE_SE) -> str:
    """Why the best of `trials` trials does not beat the defaults beyond chance, from both per-row held-out losses:
    its mean gain is under se * max(1, sqrt(2 ln trials)) standard errors ("" if it beats them)."""
    diff = np.asarray(defaults) - np.asarray(best)
    gain, error = float(diff.mean()), float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else 0.0
    bar = se * max(1.0, float(np.sqrt(2 * np.log(max(trials, 1)))))
    if gain > bar * error:
        return ""
    return (f"defaults kept: the best of {trials} trials gains {gain:.4f} in held-out log loss, within {bar:.1f} "
            f"standard errors ({error:.4f}) of chance")


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
    row_losses: dict[int, np.ndarray] = {}  # the defaults' and the best trial's per-row held-out losses

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
        losses = recalibrated_losses(np.concatenate(ys), np.concatenate(zs))
        value = float(np.mean(losses))
        best = min((v for k, v in row_losses.items() if k > 0), key=np.mean, default=None)
        if trial.number == 0 or best is None or value < float(np.mean(best)):
            for k in [k for k in row_losses if k > 0]:
                del row_losses[k]
            row_losses[trial.number] = losses
        return value

    study.optimize(objective, n_trials=trials, timeout=timeout, show_progress_bar=progress, gc_after_trial=True)
    rows = [{"number": t.number, "state": t.state.name, "value": t.value,
             "params": t.user_attrs.get("params", t.params),
             "seconds": (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete else None}
            for t in study.trials]
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        return StudyResult(member.name, member.defaults(), None, rows, time.monotonic() - t0)
    best = min(done, key=lambda t: t.value)
    kept = ""
    if best.number != 0 and 0 in row_losses and best.number in row_losses:
        kept = within_noise(row_losses[0], row_losses[best.number], len(done))
        if kept:
            best = next(t for t in done if t.number == 0)
    return StudyResult(member.name, best.user_attrs["params"], best.value, rows, time.monotonic() - t0, kept)
