"""Cross-fitting: every member's out-of-fold log-odds on the training rows, then a final fit on all of them.

The training rows are cut into K folds (per class, leads ordered by a hash of their id: deterministic). For fold k a
member is fitted on the other folds, minus an early-stopping slice of them (also by id hash), stopped early on that
slice, and asked for the log-odds of fold k's rows, which it has never seen: no row's prediction comes from a model
that was fitted, or stopped, on that row's label. The stacker and the calibration learn from these out-of-fold
predictions (models/stack.py), so their weights rest on every training row, not on one validation slice.

The member that is registered is then fitted once more on every training row, for the mean number of rounds
(epochs) the folds stopped at, scaled up by K/(K-1) for the larger set.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from models.members import Fitted, Member, MemberData
from models.preprocess import FeatureSchema
from models.split import stratified_order

EARLY_STOP_SHARE = 7  # one row in 7 of each fold's training part stops it early


@dataclass
class Folds:
    """Fold k's held-out rows and, for its fit, the training rows and the early-stopping rows (frame index labels)."""

    held_out: list[np.ndarray]
    fit_rows: list[np.ndarray]
    stop_rows: list[np.ndarray]

    @property
    def k(self) -> int:
        return len(self.held_out)


def make_folds(frame: pd.DataFrame, k: int, by_time: bool = False) -> Folds:
    """K deterministic folds over `frame`'s rows (by its index labels): stratified by label, or, `by_time`, K
    consecutive blocks of event time (for data split by time: the stacker then weighs members by how well they
    carry to another period, which is what scoring tomorrow's leads asks of them)."""
    if k < 2:
        raise ValueError(f"--folds {k}: cross-fitting needs at least 2 folds")
    held: list[list] = [[] for _ in range(k)]
    stop_mark: list = []
    for ranked in stratified_order(frame):
        positions = np.arange(len(ranked))
        if not by_time:
            for fold in range(k):
                held[fold].extend(ranked[positions % k == fold])
        stop_mark.extend(ranked[(positions // k) % EARLY_STOP_SHARE == 0])
    if by_time:
        times = pd.to_datetime(frame["event_timestamp"], utc=True)
        order = frame.index[np.lexsort((frame["lead_id"].astype(str).to_numpy(), times.to_numpy()))]
        for fold, block in enumerate(np.array_split(order.to_numpy(), k)):
            held[fold].extend(block)
    index = frame.index.to_numpy()
    is_stop = np.isin(index, stop_mark)
    out = Folds([], [], [])
    for fold in range(k):
        is_held = np.isin(index, held[fold])
        out.held_out.append(np.sort(index[is_held]))
        out.fit_rows.append(index[~is_held & ~is_stop])
        out.stop_rows.append(index[~is_held & is_stop])
    return out


def rounds_of(fitted: Fitted) -> int:
    """How many rounds (trees or epochs) the early-stopped fit kept."""
    return fitted.best_iteration if fitted.name == "lightgbm" else fitted.best_iteration + 1


@dataclass
class CrossFit:
    member: str
    oof_logit: np.ndarray  # per training row, in the frame's row order
    fold_rounds: list[int] = field(default_factory=list)
    fold_losses: list[float] = field(default_factory=list)  # held-out log loss per fold
    seconds: float = 0.0

    def final_rounds(self, k: int) -> int | None:
        """Rounds for the fit on every row: the folds' mean, scaled by K/(K-1); None for members without rounds."""
        if not any(self.fold_rounds):
            return None
        return max(1, int(round(np.mean(self.fold_rounds) * k / (k - 1))))


def log_loss(y: np.ndarray, z: np.ndarray) -> float:
    return float(np.mean(np.logaddexp(0.0, np.where(y > 0, -z, z))))


def member_data(schema: FeatureSchema, train: pd.DataFrame, valid: pd.DataFrame | None, options,  # noqa: ANN001
                rounds: int | None = None) -> MemberData:
    """The rows of one fit as the members take them."""
    return MemberData(schema, train, valid, train["label"].to_numpy("int64"),
                      None if valid is None else valid["label"].to_numpy("int64"), threads=options.threads,
                      max_epochs=options.max_epochs, increasing=tuple(options.increasing), rounds=rounds)


def cross_fit(member: Member, params: dict, frame: pd.DataFrame, folds: Folds, schema: FeatureSchema, options,  # noqa: ANN001
              seed: int = 0, on_fold: Callable[[int], None] = lambda _k: None) -> CrossFit:
    """Out-of-fold log-odds of `member` with `params` for every row of `frame` (see the module docstring)."""
    t0 = time.monotonic()
    position = pd.Series(np.arange(len(frame)), index=frame.index)
    oof = np.full(len(frame), np.nan)
    result = CrossFit(member.name, oof)
    for k in range(folds.k):
        data = member_data(schema, frame.loc[folds.fit_rows[k]], frame.loc[folds.stop_rows[k]], options)
        fitted = member.fit(data, params, seed=seed)
        held = frame.loc[folds.held_out[k]]
        logit = member.predict(fitted, data, held)
        oof[position.loc[folds.held_out[k]].to_numpy()] = logit
        result.fold_rounds.append(rounds_of(fitted) if fitted.history and member.name != "linear" else 0)
        result.fold_losses.append(log_loss(held["label"].to_numpy(), logit))
        on_fold(k)
    if np.isnan(oof).any():
        raise RuntimeError(f"cross-fitting {member.name} left {int(np.isnan(oof).sum())} rows without a prediction")
    result.seconds = time.monotonic() - t0
    return result


def fit_final(member: Member, params: dict, frame: pd.DataFrame, schema: FeatureSchema, crossfit: CrossFit,
              folds: Folds, options, seed: int = 0) -> tuple[Fitted, MemberData]:  # noqa: ANN001
    """The member fitted on every training row for the rounds the folds found."""
    data = member_data(schema, frame, None, options, rounds=crossfit.final_rounds(folds.k))
    return member.fit(data, params, seed=seed), data
