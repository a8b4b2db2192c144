"""The registered model: `LeadScorerEnsemble`, an MLflow PythonModel over XGBoost, LightGBM and a PyTorch MLP.

Serving loads it with `mlflow.pyfunc.load_model("models:/lead-scorer@champion")`; this module (with
models/preprocess.py and models/tabular_net.py) is all the code that travels with the model, so it imports no
training code. The members and their settings live in one `bundle` directory (an MLflow artifact):

    schema.json     FeatureSchema: features, categories, medians, scales
    ensemble.json   members, stacker weights and intercept, calibration, tier thresholds, feature service
    xgboost.json    XGBoost booster (trees up to the early-stopping best iteration)
    lightgbm.txt    LightGBM booster (best iteration)
    mlp.pt, mlp.json  TabularNet weights and configuration

Scoring: z = intercept + sum_m weight_m * logit_m (a logistic stacker over the members' log-odds, fitted on
validation predictions), then calibration: `platt` (the stacker is Platt scaling: score = sigmoid(z)) or `isotonic`
(a monotone map of sigmoid(z), stored as breakpoints). Explanations are the boosters' tree-SHAP contributions, in
log-odds, each multiplied by the member's stacker weight; the MLP's share, which tree SHAP cannot split by feature,
is reported apart as `unattributed` so base_value + contributions + unattributed = z.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd

from models.preprocess import FeatureSchema, mlp_arrays, tree_frame

BOOSTERS = ("xgboost", "lightgbm")
SCORE_CLIP = 1e-4


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


def calibrate(z: np.ndarray, calibration: dict) -> np.ndarray:
    """Stacked log-odds -> calibrated probability (see the module docstring)."""
    p = sigmoid(z)
    if calibration.get("method") == "isotonic":
        p = np.interp(p, calibration["x"], calibration["y"])
    return np.clip(p, SCORE_CLIP, 1 - SCORE_CLIP)


class LeadScorerEnsemble(mlflow.pyfunc.PythonModel):
    """Calibrated lead score plus each member's probability; per-lead explanations; tier cut-offs."""

    feature_names: list[str]
    categorical_features: list[str]
    weights: dict[str, float]
    feature_service: str
    tier_thresholds: dict[str, float]

    def load_context(self, context) -> None:  # noqa: ANN001 - mlflow.pyfunc.PythonModelContext
        self.load_bundle(context.artifacts["bundle"])

    @classmethod
    def from_bundle(cls, path: str | Path) -> LeadScorerEnsemble:
        """An ensemble loaded straight from a bundle directory (training and tests; serving uses load_context)."""
        return cls().load_bundle(path)

    def load_bundle(self, path: str | Path) -> LeadScorerEnsemble:
        path = Path(path)
        self.schema = FeatureSchema.load(path / "schema.json")
        meta = json.loads((path / "ensemble.json").read_text())
        self.meta = meta
        self.members: list[str] = meta["members"]
        self.weights = {m: float(meta["weights"][m]) for m in self.members}
        self.intercept = float(meta["intercept"])
        self.calibration = meta["calibration"]
        self.feature_service = meta.get("feature_service", "")
        self.tier_thresholds = {k: float(v) for k, v in meta["tier_thresholds"].items()}
        self.mlp_mean_logit = float(meta.get("mlp_mean_logit", 0.0))
        self.feature_names = list(self.schema.features)
        self.categorical_features = list(self.schema.categorical)
        self._models = {}
        if "xgboost" in self.members:
            import xgboost as xgb

            booster = xgb.Booster()
            booster.load_model(str(path / "xgboost.json"))
            self._models["xgboost"] = booster
        if "lightgbm" in self.members:
            import lightgbm as lgb

            self._models["lightgbm"] = lgb.Booster(model_file=str(path / "lightgbm.txt"))
        if "mlp" in self.members:
            import torch

            from models.tabular_net import TabularNet

            net = TabularNet(**json.loads((path / "mlp.json").read_text()))
            net.load_state_dict(torch.load(path / "mlp.pt", weights_only=True))
            net.eval()
            self._models["mlp"] = net
        return self

    # --- scoring ---
    def member_logits(self, df: pd.DataFrame) -> dict[str, np.ndarray]:
        """Each member's raw log-odds for the rows of df."""
        out: dict[str, np.ndarray] = {}
        trees = tree_frame(df, self.schema) if set(self.members) & set(BOOSTERS) else None
        if "xgboost" in self._models:
            import xgboost as xgb

            dm = xgb.DMatrix(trees, enable_categorical=True)
            out["xgboost"] = self._models["xgboost"].predict(dm, output_margin=True).astype("float64")
        if "lightgbm" in self._models:
            out["lightgbm"] = np.asarray(self._models["lightgbm"].predict(trees, raw_score=True), "float64")
        if "mlp" in self._models:
            from models.tabular_net import predict_logits

            x_num, x_cat = mlp_arrays(df, self.schema)
            out["mlp"] = predict_logits(self._models["mlp"], x_num, x_cat).astype("float64")
        return out

    def stacked_logit(self, logits: dict[str, np.ndarray]) -> np.ndarray:
        return self.intercept + sum(self.weights[m] * logits[m] for m in self.members)

    def score(self, df: pd.DataFrame) -> pd.DataFrame:
        """`score` (calibrated probability) and `p_<member>` per row, index kept."""
        logits = self.member_logits(df)
        out = pd.DataFrame({"score": calibrate(self.stacked_logit(logits), self.calibration)}, index=df.index)
        for m in self.members:
            out[f"p_{m}"] = sigmoid(logits[m])
        return out

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:  # noqa: ANN001
        """pyfunc entry point: `score` and `p_<member>` for each row of model_input (feature columns)."""
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        return self.score(frame).reset_index(drop=True)

    def tier(self, scores: np.ndarray) -> list[str]:
        """A/B/C/D by the cut-offs taken from the validation score distribution."""
        cuts = sorted(self.tier_thresholds.items(), key=lambda kv: -kv[1])
        return [next((t for t, cut in cuts if s >= cut), cuts[-1][0]) for s in np.asarray(scores)]

    # --- explanations ---
    def booster_contributions(self, member: str, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(rows x features) tree-SHAP contributions in log-odds and the base value per row, for one booster."""
        trees = tree_frame(df, self.schema)
        if member == "xgboost":
            import xgboost as xgb

            raw = self._models["xgboost"].predict(xgb.DMatrix(trees, enable_categorical=True), pred_contribs=True)
        else:
            raw = self._models["lightgbm"].predict(trees, pred_contrib=True)
        raw = np.asarray(raw, "float64")
        return raw[:, :-1], raw[:, -1]

    def explain(self, df: pd.DataFrame, top_k: int = 5) -> list[dict]:
        """Per row: base_value, signed contributions per feature (log-odds of the stacked score), top +/- features."""
        n, names = len(df), self.feature_names
        contrib = np.zeros((n, len(names)))
        base = np.full(n, self.intercept)
        for m in self.members:
            if m in BOOSTERS:
                c, b = self.booster_contributions(m, df)
                contrib += self.weights[m] * c
                base += self.weights[m] * b
        unattributed = np.zeros(n)
        if "mlp" in self.members:
            from models.tabular_net import predict_logits

            x_num, x_cat = mlp_arrays(df, self.schema)
            mlp = predict_logits(self._models["mlp"], x_num, x_cat).astype("float64")
            base += self.weights["mlp"] * self.mlp_mean_logit
            unattributed = self.weights["mlp"] * (mlp - self.mlp_mean_logit)
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


def _plain(value: object) -> object:
    """numpy scalars -> Python scalars, so explanations serialise as JSON."""
    return value.item() if isinstance(value, np.generic) else value
