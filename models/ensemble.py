"""The registered model: `LeadScorerEnsemble`, an MLflow PythonModel over XGBoost, LightGBM, a PyTorch MLP and a
logistic regression (the `linear` member), each present only if cross-fitting gave it a stacker weight.

Serving loads it with `mlflow.pyfunc.load_model("models:/lead-scorer@champion")`; this module (with
models/preprocess.py and models/tabular_net.py) is all the code that travels with the model, so it imports no
training code. The members and their settings live in one `bundle` directory (an MLflow artifact):

    schema.json     FeatureSchema: features, categories, medians, scales
    ensemble.json   members, stacker weights and intercept, calibration, tier thresholds, feature service
    xgboost.json    XGBoost booster (trees up to the early-stopping best iteration)
    lightgbm.txt    LightGBM booster (best iteration)
    mlp.pt, mlp.json  TabularNet weights and configuration
    linear.json     the linear member's expansion and coefficients (models/linear.py)

Scoring: z = intercept + sum_m weight_m * logit_m (a logistic stacker over the members' log-odds, fitted on their
out-of-fold predictions: models/crossfit.py), then calibration: `platt` (score = sigmoid(z)) or `isotonic` (a
monotone map of sigmoid(z), stored as breakpoints). Explanations are the boosters' tree-SHAP (or tree-path)
contributions in log-odds and the linear member's exact per-feature terms (minus their training means), each times
the member's stacker weight; the MLP's share, which cannot be split by feature cheaply, is reported apart as
`unattributed`, so base_value + contributions + unattributed = z.

Serving's path (`score_records`) computes the same function with less per-call work: each booster's margin is the
sum of the leaves its trees send the row to (models/forest.py walks them; models/paths.py sums them and gives the
path explanations from the same leaves), and the MLP runs as numpy (models.tabular_net.NumpyNet). Both agree with
the frame path to float32 rounding (about 1e-6 in log-odds, tested), and every serving call uses them, so /score and
/rank give a lead the same score.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd

from models.boosters import PARALLEL_ROWS, SMALL_BATCH, leaf_pool, lgb_threads, xgb_threads
from models.preprocess import Encoded, Encoder, FeatureSchema

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
        self.encoder = Encoder(self.schema)  # lookups and arrays built once; every call encodes with it
        self._models = {}
        if "xgboost" in self.members:
            import xgboost as xgb

            booster = xgb.Booster()
            booster.load_model(str(path / "xgboost.json"))
            self._models["xgboost"] = booster
        if "lightgbm" in self.members:
            import lightgbm as lgb

            self._models["lightgbm"] = lgb.Booster(model_file=str(path / "lightgbm.txt"))
        if "linear" in self.members:
            from models.linear import LinearModel

            self._models["linear"] = LinearModel.load(path / "linear.json")
        if "mlp" in self.members:
            import torch

            from models.tabular_net import TabularNet

            net = TabularNet(**json.loads((path / "mlp.json").read_text()))
            net.load_state_dict(torch.load(path / "mlp.pt", weights_only=True))
            net.eval()
            self._models["mlp"] = net
        return self

    def _mlp_numpy(self):  # noqa: ANN202 - models.tabular_net.NumpyNet, built on first use
        net = getattr(self, "_numpy_net", None)
        if net is None:
            from models.tabular_net import NumpyNet

            net = self._numpy_net = NumpyNet(self._models["mlp"])
        return net

    # --- scoring ---
    # Every path encodes the rows once with `self.encoder` (numpy arrays, no pandas frames) and feeds the members
    # arrays: the boosters the tree matrix (numerics, category codes with NaN for missing/unseen: what they see when
    # given models.preprocess.tree_frame's pandas categories, whose order is the one they were trained on), the MLP
    # the arrays of models.preprocess.mlp_arrays. tests/unit/test_models.py holds the outputs equal to the
    # frame-based reference path.
    def encode(self, df: pd.DataFrame) -> Encoded:
        return self.encoder.encode(df)

    def _xgb_matrix(self, encoded: Encoded):  # noqa: ANN202 - xgboost.DMatrix
        import xgboost as xgb

        booster = self._models["xgboost"]
        if getattr(self, "_xgb_types", None) is None:
            self._xgb_types = booster.feature_types  # read from the booster once, not per call
        # columns are always in the booster's order (the encoder's): no names to build or check on every call; small
        # batches built on one thread (measured 134 against 186 us for 8 leads)
        return xgb.DMatrix(encoded.trees, feature_types=self._xgb_types, enable_categorical=True,
                           nthread=1 if len(encoded.trees) < SMALL_BATCH else -1)

    def _logits(self, encoded: Encoded, xgb_matrix=None) -> dict[str, np.ndarray]:  # noqa: ANN001
        out: dict[str, np.ndarray] = {}
        if "xgboost" in self._models:
            booster = xgb_threads(self._models["xgboost"], len(encoded.trees))
            if xgb_matrix is None:
                # a numpy array in place: the trees' categorical splits test the codes themselves, NaN is missing
                raw = booster.inplace_predict(encoded.trees, predict_type="margin")
            else:
                raw = booster.predict(xgb_matrix, output_margin=True, validate_features=False)
            out["xgboost"] = np.asarray(raw).astype("float64")
        if "lightgbm" in self._models:
            out["lightgbm"] = np.asarray(self._models["lightgbm"].predict(encoded.trees, raw_score=True,
                                                                          **lgb_threads(encoded)), "float64")
        if "linear" in self._models:
            out["linear"] = self._models["linear"].logit(encoded.trees)
        if "mlp" in self._models:
            from models.tabular_net import predict_logits

            out["mlp"] = predict_logits(self._models["mlp"], *encoded.mlp()).astype("float64")
        return out

    def member_logits(self, df: pd.DataFrame) -> dict[str, np.ndarray]:
        """Each member's raw log-odds for the rows of df."""
        return self._logits(self.encode(df))

    def stacked_logit(self, logits: dict[str, np.ndarray]) -> np.ndarray:
        return self.intercept + sum(self.weights[m] * logits[m] for m in self.members)

    def _score_frame(self, logits: dict[str, np.ndarray], index: pd.Index) -> pd.DataFrame:
        out = {"score": calibrate(self.stacked_logit(logits), self.calibration)}
        for m in self.members:
            out[f"p_{m}"] = sigmoid(logits[m])
        return pd.DataFrame(out, index=index)

    def score(self, df: pd.DataFrame) -> pd.DataFrame:
        """`score` (calibrated probability) and `p_<member>` per row, index kept."""
        return self._score_frame(self.member_logits(df), df.index)

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:  # noqa: ANN001
        """pyfunc entry point: `score` and `p_<member>` for each row of model_input (feature columns)."""
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        return self.score(frame).reset_index(drop=True)

    def tier(self, scores: np.ndarray) -> list[str]:
        """A/B/C/D by the cut-offs taken from the validation score distribution."""
        cuts = sorted(self.tier_thresholds.items(), key=lambda kv: -kv[1])
        names = [t for t, _ in cuts]
        above = np.asarray(scores, "float64").reshape(-1, 1) >= np.array([cut for _, cut in cuts])
        first = np.where(above.any(axis=1), above.argmax(axis=1), len(cuts) - 1)  # the highest cut reached
        return [names[k] for k in first.tolist()]

    # --- explanations ---
    def _contributions(self, member: str, encoded: Encoded, xgb_matrix=None,  # noqa: ANN001
                       method: str = "shap") -> tuple[np.ndarray, np.ndarray]:
        """(rows x features) contributions and the base per row: tree SHAP, or tree paths (from the leaves)."""
        if method == "path":
            return self.path_tables(member).contributions(self._leaves(member, encoded))
        if member == "xgboost":
            matrix = self._xgb_matrix(encoded) if xgb_matrix is None else xgb_matrix
            raw = xgb_threads(self._models["xgboost"], len(encoded.trees)).predict(
                matrix, validate_features=False, pred_contribs=True)
        else:
            raw = self._models["lightgbm"].predict(encoded.trees, pred_contrib=True, **lgb_threads(encoded))
        raw = np.asarray(raw, "float64")
        return raw[:, :-1], raw[:, -1]

    def _leaves(self, member: str, encoded: Encoded) -> np.ndarray:
        """The leaf each tree of the booster sends each row to (rows x trees), as the booster's `pred_leaf` gives it,
        from models/forest.py's compiled walk of its trees (no DMatrix, no call into the library)."""
        forests = getattr(self, "_forests", None)
        if forests is None:
            forests = self._forests = {}
        if member not in forests:
            from models.forest import Forest

            build = Forest.from_xgboost if member == "xgboost" else Forest.from_lightgbm
            forests[member] = build(self._models[member])
        return forests[member].leaves(encoded.trees)

    def _all_leaves(self, boosters: list[str], encoded: Encoded, keep_matrix: bool = False) -> dict:
        """Each booster's leaves for all rows; big batches in two halves on two threads (the walk releases the GIL);
        with `keep_matrix`, XGBoost's DMatrix of the rows too (tree SHAP needs it)."""
        n = len(encoded.trees)
        workers = min(2, os.cpu_count() or 1)
        if n < PARALLEL_ROWS or workers < 2:
            out = {m: self._leaves(m, encoded) for m in boosters}
            out["matrix"] = self._xgb_matrix(encoded) if keep_matrix and "xgboost" in boosters and n else None
            return out
        halves = [encoded.rows(slice(0, n // 2)), encoded.rows(slice(n // 2, n))]
        parts = list(leaf_pool().map(lambda part: {m: self._leaves(m, part) for m in boosters}, halves))
        out = {m: np.concatenate([p[m] for p in parts]) for m in boosters}
        out["matrix"] = self._xgb_matrix(encoded) if keep_matrix and "xgboost" in boosters else None
        return out

    def path_tables(self, member: str):  # noqa: ANN201 - models.paths.PathTables
        """The booster's per-leaf path attributions, built on first use (well under a second)."""
        from models.paths import lightgbm_tables, xgboost_tables

        tables = getattr(self, "_paths", None)
        if tables is None:
            tables = self._paths = {}
        if member not in tables:
            if member == "xgboost":
                probe = np.full((1, len(self.feature_names)), np.nan)
                tables[member] = xgboost_tables(self._models["xgboost"], self.feature_names, probe)
            else:
                tables[member] = lightgbm_tables(self._models["lightgbm"], len(self.feature_names))
        return tables[member]

    def booster_contributions(self, member: str, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(rows x features) tree-SHAP contributions in log-odds and the base value per row, for one booster."""
        return self._contributions(member, self.encode(df))

    def explain(self, df: pd.DataFrame, top_k: int = 5, method: str = "shap") -> list[dict]:
        """Per row: base_value, signed contributions per feature (log-odds of the stacked score), top +/- features.

        method: "shap" (the boosters' tree SHAP) or "path" (tree-path attributions, models/paths.py: about 25x
        cheaper); either way base_value + contributions + unattributed is the stacked logit."""
        return self.score_and_explain(df, top_k, method)[1]

    def score_and_explain(self, df: pd.DataFrame, top_k: int = 5,
                          method: str = "shap") -> tuple[pd.DataFrame, list[dict]]:
        """`score(df)` and `explain(df, top_k, method)` from one encoding of the rows and one pass per member."""
        encoded = self.encode(df)
        logits, contrib, base, unattributed = self._explained(encoded, method)
        values = _Cells(df, self.feature_names)
        return self._score_frame(logits, df.index), self._explanations(contrib, base, unattributed, values.get, top_k,
                                                                       full=True)

    def score_records(self, rows: list[dict], top_k: int = 3, method: str | None = "path") -> dict:
        """Serving's path: rows as {feature: value} dicts, no pandas. Returns numpy arrays `score`, `logit`,
        `p_<member>`, `missing` (count per row) and, unless method is None, `explanations` (as `explain` gives
        them, without the full contributions dict). Margins come from the boosters' leaves and the MLP runs as numpy
        (see the module docstring), whatever the explanation method."""
        if method not in (None, "shap", "path"):
            raise ValueError(f"unknown explanation method {method!r}: use 'shap' or 'path'")
        encoded, grid, missing = self.encoder.encode_records(rows)
        n, names = len(rows), self.feature_names
        logits: dict[str, np.ndarray] = {}
        contrib, base = np.zeros((n, len(names))), np.full(n, self.intercept)
        boosters = [m for m in self.members if m in BOOSTERS]
        all_leaves = self._all_leaves(boosters, encoded, keep_matrix=method == "shap")
        matrix = all_leaves.pop("matrix", None)
        for m in self.members:
            if m in BOOSTERS:
                tables = self.path_tables(m)
                leaves = all_leaves[m]
                if method == "path":
                    c, b, logits[m] = tables.explain(leaves)
                    contrib += self.weights[m] * c
                    base += self.weights[m] * b
                else:
                    logits[m] = tables.margin(leaves)
                    if method == "shap":
                        c, b = self._contributions(m, encoded, matrix, "shap")
                        contrib += self.weights[m] * c
                        base += self.weights[m] * b
            elif m == "linear" and method is not None:  # one pass over its terms for the logit and the explanation
                logits[m], c, b = self._models[m].explained(encoded.trees)
                contrib += self.weights[m] * c
                base += self.weights[m] * b
            elif m == "linear":
                logits[m] = self._models[m].logit(encoded.trees)
            else:
                logits[m] = self._mlp_numpy()(*encoded.mlp())
        out: dict = {}
        z = self.stacked_logit(logits)
        if method is not None:
            unattributed = np.zeros(n)
            if "mlp" in self.members:
                base += self.weights["mlp"] * self.mlp_mean_logit
                unattributed = self.weights["mlp"] * (logits["mlp"] - self.mlp_mean_logit)

            def cell(i: int, j: int) -> object:
                v = grid[i][j]
                return None if _missing(v) else _plain(v)

            out["explanations"] = self._explanations(contrib, base, unattributed, cell, top_k, full=False)
        out["logit"], out["score"] = z, calibrate(z, self.calibration)
        for m in self.members:
            out[f"p_{m}"] = sigmoid(logits[m])
        out["missing"] = missing
        return out

    def _explained(self, encoded: Encoded, method: str) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray]:
        """Member logits, weighted booster contributions (rows x features), base and the MLP's unattributed share."""
        if method not in ("shap", "path"):
            raise ValueError(f"unknown explanation method {method!r}: use 'shap' or 'path'")
        matrix = self._xgb_matrix(encoded) if "xgboost" in self._models else None
        logits = self._logits(encoded, matrix)
        n, names = len(encoded.trees), self.feature_names
        contrib = np.zeros((n, len(names)))
        base = np.full(n, self.intercept)
        for m in self.members:
            if m in BOOSTERS:
                c, b = self._contributions(m, encoded, matrix, method)
            elif m == "linear":
                c, b = self._models[m].contributions(encoded.trees)
            else:
                continue
            contrib += self.weights[m] * c
            base += self.weights[m] * b
        unattributed = np.zeros(n)
        if "mlp" in self.members:
            base += self.weights["mlp"] * self.mlp_mean_logit
            unattributed = self.weights["mlp"] * (logits["mlp"] - self.mlp_mean_logit)
        return logits, contrib, base, unattributed

    def _explanations(self, contrib: np.ndarray, base: np.ndarray, unattributed: np.ndarray, cell,  # noqa: ANN001
                      top_k: int, full: bool) -> list[dict]:
        """Per row: base value, top positive and negative (feature, value, contribution), unattributed, logit."""
        names = self.feature_names
        order = np.argsort(-contrib, axis=1) if len(contrib) else np.zeros((0, len(names)), "int64")
        logit = base + contrib.sum(axis=1) + unattributed
        rows = []
        for i, (row, idx) in enumerate(zip(contrib.tolist(), order.tolist(), strict=True)):
            pos = [(names[j], cell(i, j), row[j]) for j in idx[:top_k] if row[j] > 0]
            neg = [(names[j], cell(i, j), row[j]) for j in idx[::-1][:top_k] if row[j] < 0]
            out = {"base_value": float(base[i]), "top_positive": pos, "top_negative": neg,
                   "unattributed": float(unattributed[i]), "logit": float(logit[i])}
            if full:
                out["contributions"] = dict(zip(names, row, strict=True))
            rows.append(out)
        return rows


class _Cells:
    """A lead's own value of a feature as explanations show it (None if missing), converted only where asked for."""

    def __init__(self, df: pd.DataFrame, names: list[str]) -> None:
        self.df, self.names = df, names
        self.columns: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def get(self, i: int, j: int) -> object:
        if j not in self.columns:
            values = self.df[self.names[j]].to_numpy(dtype=object)
            self.columns[j] = (values, pd.isna(values))
        values, missing = self.columns[j]
        return None if missing[i] else _plain(values[i])


def _missing(value: object) -> bool:
    """None or NaN: what pandas' isna counts as missing among the plain values a request carries."""
    return value is None or (isinstance(value, float) and value != value)


def _plain(value: object) -> object:
    """numpy scalars -> Python scalars and dates -> ISO 8601 text, so explanations serialise as JSON."""
    if isinstance(value, datetime):
        return value.isoformat()
    return value.item() if isinstance(value, np.generic) else value
