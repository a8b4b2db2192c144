"""Combine the members: a non-negative logistic stacker over their log-odds (or their equal blend, when that does
better out of fold), then a calibration chosen by CV.

The stacker, z = b + sum w_m * logit_m with w_m >= 0, is fitted by maximum likelihood on the members' out-of-fold
log-odds over the training rows (models/crossfit.py); with its free scale it is Platt scaling of a weighted blend,
so `platt` means "the stacker as is". `isotonic` adds a monotone map on top. Which one is used is decided by 5-fold
cross-validated log loss over those rows (fitting and judging a calibration on the same rows would always favour
isotonic).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize

from models.ensemble import SCORE_CLIP, sigmoid

L2 = 1e-4


def _loss(y: np.ndarray, z: np.ndarray) -> float:
    return float(np.mean(np.logaddexp(0.0, np.where(y > 0, -z, z))))


def fit_stacker(logits: dict[str, np.ndarray], y: np.ndarray) -> tuple[dict[str, float], float]:
    """Non-negative member weights and an intercept maximising the validation log-likelihood."""
    names = list(logits)
    x = np.column_stack([logits[m] for m in names])
    y = np.asarray(y, "float64")

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        z = theta[0] + x @ theta[1:]
        p = sigmoid(z)
        grad = np.concatenate([[np.mean(p - y)], x.T @ (p - y) / len(y)]) + 2 * L2 * np.r_[0.0, theta[1:]]
        return _loss(y, z) + L2 * float(theta[1:] @ theta[1:]), grad

    start = np.r_[0.0, np.full(len(names), 1.0 / len(names))]
    res = minimize(objective, start, jac=True, method="L-BFGS-B", bounds=[(None, None)] + [(0.0, None)] * len(names))
    return {m: float(w) for m, w in zip(names, res.x[1:], strict=True)}, float(res.x[0])


def fit_equal(logits: dict[str, np.ndarray], y: np.ndarray) -> tuple[dict[str, float], float]:
    """The equal blend of the members' standardised log-odds, Platt-scaled, written as stacker weights and an
    intercept: b + a * sum_m (z_m - mean_m) / sd_m = (b - a * sum_m mean_m / sd_m) + sum_m (a / sd_m) * z_m."""
    stats = {m: (float(np.mean(z)), float(np.std(z)) or 1.0) for m, z in logits.items()}
    blend = sum((z - stats[m][0]) / stats[m][1] for m, z in logits.items())
    scale, b = fit_stacker({"blend": blend}, y)
    a = scale["blend"]
    return {m: a / sd for m, (_, sd) in stats.items()}, b - a * sum(mu / sd for mu, sd in stats.values())


COMBINERS = {"stacker": fit_stacker, "equal": fit_equal}


def choose_combiner(logits: dict[str, np.ndarray], y: np.ndarray, folds: int = 5,
                    seed: int = 0) -> tuple[str, dict[str, float]]:
    """'stacker' (learned weights) or 'equal' (the equal blend), whichever has the lower cross-validated log loss
    over these rows: with few positives the learned weights can be noise, and then the plain blend is better."""
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray(y)
    losses = {}
    for name, combine in COMBINERS.items():
        parts = []
        for fit_idx, eval_idx in StratifiedKFold(folds, shuffle=True, random_state=seed).split(y, y):
            weights, b = combine({m: v[fit_idx] for m, v in logits.items()}, y[fit_idx])
            parts.append(_loss(y[eval_idx], b + sum(weights[m] * logits[m][eval_idx] for m in logits)))
        losses[name] = float(np.mean(parts))
    return min(losses, key=losses.get), losses


def fit_isotonic(p: np.ndarray, y: np.ndarray) -> dict:
    """Isotonic map stored as breakpoints (np.interp at serving time; no scikit-learn needed there)."""
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(p, y)
    return {"method": "isotonic", "x": [float(v) for v in iso.X_thresholds_],
            "y": [float(v) for v in iso.y_thresholds_]}


def choose_calibration(logits: dict[str, np.ndarray], y: np.ndarray, folds: int = 5, seed: int = 0,
                       combiner: str = "stacker") -> tuple[str, dict[str, float], dict[str, np.ndarray]]:
    """'platt' or 'isotonic', whichever has the lower out-of-fold log loss; also both losses and both out-of-fold
    probabilities (the stacker and the calibration fitted without each row: the ensemble's honest estimate)."""
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray(y)
    oof = {"platt": np.zeros(len(y)), "isotonic": np.zeros(len(y))}
    for fit_idx, eval_idx in StratifiedKFold(folds, shuffle=True, random_state=seed).split(y, y):
        weights, b = COMBINERS[combiner]({m: v[fit_idx] for m, v in logits.items()}, y[fit_idx])

        def z(idx: np.ndarray, weights: dict = weights, b: float = b) -> np.ndarray:
            return b + sum(weights[m] * logits[m][idx] for m in logits)

        oof["platt"][eval_idx] = sigmoid(z(eval_idx))
        iso = fit_isotonic(sigmoid(z(fit_idx)), y[fit_idx])
        oof["isotonic"][eval_idx] = np.interp(sigmoid(z(eval_idx)), iso["x"], iso["y"])
    losses = {}
    for name, p in oof.items():
        p = np.clip(p, SCORE_CLIP, 1 - SCORE_CLIP)
        losses[name] = float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    return min(losses, key=losses.get), losses, oof


TIER_SHARES = {"A": 0.10, "B": 0.30, "C": 0.60}  # cumulative share of leads at or above each tier


def tier_thresholds(scores: np.ndarray) -> dict[str, float]:
    """Score cut-offs: A = top 10 %, B = next 20 %, C = next 30 %, D = the rest (of the validation scores)."""
    cuts = {t: float(np.quantile(scores, 1 - share)) for t, share in TIER_SHARES.items()}
    cuts["D"] = 0.0
    return cuts
