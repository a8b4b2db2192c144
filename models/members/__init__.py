"""Ensemble members, one module each: default parameters, an Optuna search space, and a fit with early stopping.

Every member has the same interface (see `Member`): `fit(data, params, seed, trial)` returns a `Fitted` whose
`valid_logit` is the member's log-odds on the early-stopping rows (None when trained for a fixed number of rounds on
every row: `MemberData.rounds`), `predict(fitted, data, frame)` its log-odds for any rows, and
`save(fitted, bundle_dir)` writes the files models/ensemble.py loads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from models.preprocess import FeatureSchema, mlp_arrays, tree_frame


@dataclass
class MemberData:
    """Training rows and early-stopping rows, encoded once per representation and shared by every trial.

    With `rounds` set there are no early-stopping rows: a member trains exactly that many rounds (epochs), the count
    cross-fitting found (models/crossfit.py)."""

    schema: FeatureSchema
    train: pd.DataFrame
    valid: pd.DataFrame | None
    y_train: np.ndarray
    y_valid: np.ndarray | None
    threads: int = 2
    max_epochs: int = 100
    increasing: tuple[str, ...] = ()  # numeric features whose increase must never lower a member's score
    rounds: int | None = None  # train this many rounds / epochs, no early stopping (valid is None)

    def monotone(self) -> list[int]:
        """Per feature in schema order: 1 if it must be increasing, else 0 (the boosters' monotone constraints)."""
        return [1 if f in self.increasing else 0 for f in self.schema.features]

    @cached_property
    def trees(self) -> tuple[pd.DataFrame, pd.DataFrame | None]:
        valid = None if self.valid is None else tree_frame(self.valid, self.schema)
        return tree_frame(self.train, self.schema), valid

    @cached_property
    def mlp(self) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray] | None]:
        valid = None if self.valid is None else mlp_arrays(self.valid, self.schema)
        return mlp_arrays(self.train, self.schema), valid


@dataclass
class Fitted:
    name: str
    model: Any
    params: dict
    valid_logit: np.ndarray | None
    best_iteration: int
    history: list[float] = field(default_factory=list)  # validation log loss per round / epoch


@dataclass(frozen=True)
class Member:
    name: str
    defaults: Callable[[], dict]
    suggest: Callable[..., dict]  # (optuna.Trial, MemberData) -> params
    fit: Callable[..., Fitted]  # (data, params, seed, trial=None) -> Fitted
    save: Callable[[Fitted, Any], None]  # (fitted, bundle_dir)
    importance: Callable[[Fitted, list[str]], dict[str, float]]
    predict: Callable[[Fitted, MemberData, pd.DataFrame], np.ndarray]  # log-odds for any rows


def registry() -> dict[str, Member]:
    """Every member by name, imported on demand."""
    from models.members import lgbm, linear, mlp, xgb

    return {m.MEMBER.name: m.MEMBER for m in (xgb, lgbm, mlp, linear)}


IMBALANCED = 0.2  # below this positive share the boosters may weight positives up (a tuned choice)


def class_weight(trial: Any, data: MemberData | None) -> dict:
    """For imbalanced labels, a tuned `scale_pos_weight` between 1 and sqrt(negatives / positives); nothing else.

    Weighting shifts a member's probabilities, which the stacker and the calibration undo; the tuning objective is
    the log loss after recalibration (models/tune.py), so a weighted trial is judged by how well it separates."""
    if data is None or trial is None:
        return {}
    share = float(np.mean(data.y_train))
    if not 0 < share < IMBALANCED:
        return {}
    return {"scale_pos_weight": trial.suggest_float("scale_pos_weight", 1.0, float(np.sqrt((1 - share) / share)),
                                                    log=True)}


def report_or_prune(trial: Any, value: float, step: int) -> None:
    """Tell Optuna a trial's intermediate validation loss; stop the trial if the pruner says so."""
    if trial is None:
        return
    import optuna

    trial.report(value, step)
    if trial.should_prune():
        raise optuna.TrialPruned(f"pruned at step {step} (validation log loss {value:.4f})")
