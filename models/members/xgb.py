"""XGBoost member: native categorical splits (pandas categories), histogram trees, early stopping on log loss."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from models.members import Fitted, Member, MemberData, class_weight, report_or_prune
from models.preprocess import tree_frame

MAX_ROUNDS = 2000
EARLY_STOP = 50
PRUNE_EVERY = 10


def defaults() -> dict:
    return {"eta": 0.05, "max_depth": 6, "min_child_weight": 1.0, "subsample": 0.8, "colsample_bytree": 0.8,
            "lambda": 1.0, "alpha": 0.0, "max_cat_to_onehot": 4}


def suggest(trial: Any, data: MemberData | None = None) -> dict:
    return {**class_weight(trial, data), "eta": trial.suggest_float("eta", 0.01, 0.3, log=True),
            "max_depth": trial.suggest_int("max_depth", 2, 10),
            "min_child_weight": trial.suggest_float("min_child_weight", 0.5, 20, log=True),
            "subsample": trial.suggest_float("subsample", 0.5, 1.0),
            "colsample_bytree": trial.suggest_float("colsample_bytree", 0.4, 1.0),
            "lambda": trial.suggest_float("lambda", 1e-3, 10, log=True),
            "alpha": trial.suggest_float("alpha", 1e-3, 10, log=True),
            "max_cat_to_onehot": trial.suggest_int("max_cat_to_onehot", 1, 16)}


def fit(data: MemberData, params: dict, seed: int = 0, trial: Any = None) -> Fitted:
    import xgboost as xgb

    class _Report(xgb.callback.TrainingCallback):
        def after_iteration(self, model, epoch: int, evals_log: dict) -> bool:  # noqa: ANN001
            if epoch % PRUNE_EVERY == 0:
                report_or_prune(trial, evals_log["valid"]["logloss"][-1], epoch)
            return False

    x_train, x_valid = data.trees
    dtrain = xgb.DMatrix(x_train, label=data.y_train, enable_categorical=True, nthread=data.threads)
    full = {"objective": "binary:logistic", "eval_metric": "logloss", "tree_method": "hist", "seed": seed,
            "nthread": data.threads, **params}
    if data.increasing:
        full["monotone_constraints"] = "(" + ",".join(map(str, data.monotone())) + ")"
    if data.rounds is not None:  # a fixed number of rounds on every row: no early-stopping rows
        booster = xgb.train(full, dtrain, num_boost_round=max(1, data.rounds))
        return Fitted("xgboost", booster, params, None, max(1, data.rounds) - 1, [])
    dvalid = xgb.DMatrix(x_valid, label=data.y_valid, enable_categorical=True, nthread=data.threads)
    log: dict = {}
    booster = xgb.train(full, dtrain, num_boost_round=MAX_ROUNDS, evals=[(dvalid, "valid")],
                        early_stopping_rounds=EARLY_STOP, evals_result=log, verbose_eval=False,
                        callbacks=[_Report()])
    best = int(booster.best_iteration)
    booster = booster[: best + 1]  # keep only the trees up to the best round: what is saved is what was validated
    margin = booster.predict(dvalid, output_margin=True).astype("float64")
    return Fitted("xgboost", booster, params, margin, best, [float(v) for v in log["valid"]["logloss"]])


def predict(fitted: Fitted, data: MemberData, frame) -> np.ndarray:  # noqa: ANN001 - pandas DataFrame
    import xgboost as xgb

    matrix = xgb.DMatrix(tree_frame(frame, data.schema), enable_categorical=True, nthread=data.threads)
    return fitted.model.predict(matrix, output_margin=True).astype("float64")


def save(fitted: Fitted, bundle: Path) -> None:
    fitted.model.save_model(str(Path(bundle) / "xgboost.json"))


def importance(fitted: Fitted, features: list[str]) -> dict[str, float]:
    gain = fitted.model.get_score(importance_type="total_gain")
    total = sum(gain.values()) or 1.0
    return {f: float(gain.get(f, 0.0)) / total for f in features}


MEMBER = Member("xgboost", defaults, suggest, fit, save, importance, predict)
