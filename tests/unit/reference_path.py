"""The ensemble's frame-based scoring and explaining as it was before the array path: the reference the fast path
(models.preprocess.Encoder, LeadScorerEnsemble.score_and_explain) is held equal to in the tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.ensemble import BOOSTERS, _plain, calibrate, sigmoid
from models.preprocess import mlp_arrays, tree_frame


def reference_logits(ens, df: pd.DataFrame) -> dict[str, np.ndarray]:  # noqa: ANN001 - LeadScorerEnsemble
    import xgboost as xgb

    from models.tabular_net import predict_logits

    trees = tree_frame(df, ens.schema)
    out = {}
    if "xgboost" in ens._models:
        dm = xgb.DMatrix(trees, enable_categorical=True)
        out["xgboost"] = ens._models["xgboost"].predict(dm, output_margin=True).astype("float64")
    if "lightgbm" in ens._models:
        out["lightgbm"] = np.asarray(ens._models["lightgbm"].predict(trees, raw_score=True), "float64")
    if "linear" in ens._models:
        out["linear"] = ens._models["linear"].logit(_codes(trees))
    if "mlp" in ens._models:
        out["mlp"] = predict_logits(ens._models["mlp"], *mlp_arrays(df, ens.schema)).astype("float64")
    return out


def _codes(trees: pd.DataFrame) -> np.ndarray:
    """tree_frame's columns as numbers: numerics as they are, categories as their codes (NaN where missing)."""
    cols = [np.where(trees[c].cat.codes < 0, np.nan, trees[c].cat.codes).astype("float64")
            if isinstance(trees[c].dtype, pd.CategoricalDtype) else trees[c].to_numpy("float64") for c in trees]
    return np.column_stack(cols) if cols else np.zeros((len(trees), 0))


def reference_score(ens, df: pd.DataFrame) -> pd.DataFrame:  # noqa: ANN001
    logits = reference_logits(ens, df)
    out = pd.DataFrame({"score": calibrate(ens.stacked_logit(logits), ens.calibration)}, index=df.index)
    for m in ens.members:
        out[f"p_{m}"] = sigmoid(logits[m])
    return out


def reference_contributions(ens, member: str, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    import xgboost as xgb

    trees = tree_frame(df, ens.schema)
    if member == "xgboost":
        raw = ens._models["xgboost"].predict(xgb.DMatrix(trees, enable_categorical=True), pred_contribs=True)
    else:
        raw = ens._models["lightgbm"].predict(trees, pred_contrib=True)
    raw = np.asarray(raw, "float64")
    return raw[:, :-1], raw[:, -1]


def reference_explain(ens, df: pd.DataFrame, top_k: int = 5) -> list[dict]:  # noqa: ANN001
    n, names = len(df), ens.feature_names
    contrib = np.zeros((n, len(names)))
    base = np.full(n, ens.intercept)
    for m in ens.members:
        if m in BOOSTERS:
            c, b = reference_contributions(ens, m, df)
        elif m == "linear":
            c, b = ens._models["linear"].contributions(_codes(tree_frame(df, ens.schema)))
        else:
            continue
        contrib += ens.weights[m] * c
        base += ens.weights[m] * b
    unattributed = np.zeros(n)
    if "mlp" in ens.members:
        mlp = reference_logits(ens, df)["mlp"]
        base += ens.weights["mlp"] * ens.mlp_mean_logit
        unattributed = ens.weights["mlp"] * (mlp - ens.mlp_mean_logit)
    rows = []
    values = df[names].astype(object).where(df[names].notna(), None).to_numpy()
    for i in range(n):
        order = np.argsort(-contrib[i])
        pos = [(names[j], _plain(values[i, j]), float(contrib[i, j])) for j in order[:top_k] if contrib[i, j] > 0]
        neg = [(names[j], _plain(values[i, j]), float(contrib[i, j]))
               for j in order[::-1][:top_k] if contrib[i, j] < 0]
        rows.append({"base_value": float(base[i]),
                     "contributions": {name: float(contrib[i, j]) for j, name in enumerate(names)},
                     "top_positive": pos, "top_negative": neg,
                     "unattributed": float(unattributed[i]),
                     "logit": float(base[i] + contrib[i].sum() + unattributed[i])})
    return rows
