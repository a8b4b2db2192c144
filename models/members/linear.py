"""Linear member: an L2-regularised logistic regression over one-hot categoricals and spline-expanded numerics.

It wins on small and near-linear data, and it is the member a compliance reviewer can read: every feature has a
term of its own (models/linear.py, which scores it at serving time). Tuned: the regularisation strength C.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.linear import KNOT_QUANTILES, MIN_LEVEL_ROWS, LinearModel
from models.members import Fitted, Member, MemberData
from models.preprocess import Encoder


def defaults() -> dict:
    return {"C": 0.5}


def suggest(trial: Any, data: MemberData | None = None) -> dict:
    return {"C": trial.suggest_float("C", 1e-3, 10.0, log=True)}


def _expansion(schema, trees: np.ndarray) -> tuple[LinearModel, list[tuple[str, str, int]]]:  # noqa: ANN001
    """The expansion learned from the training rows; per design column: (feature, kind, index)."""
    model = LinearModel(features=list(schema.features))
    columns: list[tuple[str, str, int]] = []
    for j, name in enumerate(schema.features):
        x = trees[:, j]
        if name in schema.categorical:
            codes = np.where(np.isfinite(x), x, -1).astype("int64")
            counts = np.bincount(codes + 1, minlength=len(schema.categories[name]) + 1)
            model.categorical[name] = [0.0] * len(counts)
            columns.append((name, "level", 0))  # missing or unseen
            columns += [(name, "level", k) for k in range(1, len(counts)) if counts[k] >= MIN_LEVEL_ROWS]
            continue
        finite = x[np.isfinite(x)]
        if len(finite) == 0:
            continue
        lo, hi = (float(v) for v in np.quantile(finite, [0.005, 0.995]))
        median = float(np.median(finite))
        filled = np.clip(np.where(np.isfinite(x), x, median), lo, hi)
        std = float(filled.std()) or 1.0
        z = (filled - filled.mean()) / std
        knots = sorted({float(k) for k in np.quantile(z, KNOT_QUANTILES)} - {float(z.min()), float(z.max())})
        model.numeric[name] = {"median": median, "lo": lo, "hi": hi, "mean": float(filled.mean()), "std": std,
                               "knots": knots, "coef": 0.0, "hinge": [0.0] * len(knots), "missing": 0.0}
        columns.append((name, "coef", 0))
        columns += [(name, "hinge", k) for k in range(len(knots))]
        if not np.isfinite(x).all():
            columns.append((name, "missing", 0))
    return model, columns


def design(model: LinearModel, columns: list[tuple[str, str, int]], trees: np.ndarray) -> np.ndarray:
    """The design matrix of the expansion's columns for encoded rows."""
    index = {name: j for j, name in enumerate(model.features)}
    out = np.zeros((len(trees), len(columns)))
    for c, (name, kind, k) in enumerate(columns):
        x = trees[:, index[name]]
        if kind == "level":
            out[:, c] = (np.where(np.isfinite(x), x, -1) + 1) == k
            continue
        spec = model.numeric[name]
        missing = ~np.isfinite(x)
        if kind == "missing":
            out[:, c] = missing
            continue
        z = (np.clip(np.where(missing, spec["median"], x), spec["lo"], spec["hi"]) - spec["mean"]) / spec["std"]
        out[:, c] = z if kind == "coef" else np.maximum(0.0, z - spec["knots"][k])
    return out


def _encoded(data: MemberData, frame: pd.DataFrame) -> np.ndarray:
    return Encoder(data.schema).encode(frame).trees


def _logistic(x: np.ndarray, y: np.ndarray, c: float, bounds: list) -> tuple[float, np.ndarray]:  # noqa: ANN001
    """Intercept and coefficients minimising mean log loss + |w|^2 / (2 C n) (scikit-learn's C), within bounds."""
    from scipy.optimize import minimize

    n = len(y)
    y = y.astype("float64")

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        z = theta[0] + x @ theta[1:]
        p = 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))
        loss = float(np.mean(np.logaddexp(0.0, np.where(y > 0, -z, z)))) + theta[1:] @ theta[1:] / (2 * c * n)
        grad = np.concatenate([[np.mean(p - y)], x.T @ (p - y) / n + theta[1:] / (c * n)])
        return loss, grad

    start = np.zeros(x.shape[1] + 1)
    start[0] = np.log(max(y.mean(), 1e-6) / max(1 - y.mean(), 1e-6))
    res = minimize(objective, start, jac=True, method="L-BFGS-B", bounds=[(None, None), *bounds],
                   options={"maxiter": 2000})
    return float(res.x[0]), res.x[1:]


def fit(data: MemberData, params: dict, seed: int = 0, trial: Any = None) -> Fitted:
    """Fit the coefficients; a feature in `data.increasing` gets a non-negative slope and non-negative bends, so its
    term never falls as it grows (monotone, like the boosters' constraints)."""
    trees = _encoded(data, data.train)
    model, columns = _expansion(data.schema, trees)
    x = design(model, columns, trees)
    bounds = [(0.0, None) if name in data.increasing and kind in ("coef", "hinge") else (None, None)
              for name, kind, _ in columns]
    model.intercept, coefs = _logistic(x, data.y_train, float(params["C"]), bounds)
    for (name, kind, k), coef in zip(columns, coefs, strict=True):
        if kind == "level":
            model.categorical[name][k] = float(coef)
        elif kind == "hinge":
            model.numeric[name]["hinge"][k] = float(coef)
        else:
            model.numeric[name][kind] = float(coef)
    terms = model.terms(trees)
    model.term_means = {f: float(v) for f, v in zip(model.features, terms.mean(axis=0), strict=True)}
    history: list[float] = []
    valid_logit = None
    if data.valid is not None:
        valid_logit = model.logit(_encoded(data, data.valid))
        y = data.y_valid
        history = [float(np.mean(np.logaddexp(0.0, np.where(y > 0, -valid_logit, valid_logit))))]
    return Fitted("linear", model, params, valid_logit, 0, history)


def predict(fitted: Fitted, data: MemberData, frame: pd.DataFrame) -> np.ndarray:
    return fitted.model.logit(_encoded(data, frame))


def save(fitted: Fitted, bundle: Path) -> None:
    fitted.model.save(Path(bundle) / "linear.json")


def importance(fitted: Fitted, features: list[str]) -> dict[str, float]:
    """Each feature's share of the coefficients' size (numerics) or of its levels' range (categoricals)."""
    model: LinearModel = fitted.model
    sizes = {f: abs(s["coef"]) + sum(map(abs, s["hinge"])) for f, s in model.numeric.items()}
    sizes |= {f: float(np.ptp(t)) for f, t in model.categorical.items()}
    total = sum(sizes.values()) or 1.0
    return {f: sizes.get(f, 0.0) / total for f in features}


MEMBER = Member("linear", defaults, suggest, fit, save, importance, predict)
