"""LightGBM member: native categorical handling (pandas categories), early stopping on log loss."""

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
    return {"learning_rate": 0.05, "num_leaves": 31, "min_data_in_leaf": 20, "feature_fraction": 0.8,
            "bagging_fraction": 0.8, "bagging_freq": 1, "lambda_l2": 1.0, "cat_smooth": 10.0}


def suggest(trial: Any, data: MemberData | None = None) -> dict:
    return {**class_weight(trial, data), "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.3, log=True),
            "num_leaves": trial.suggest_int("num_leaves", 4, 128, log=True),
            "min_data_in_leaf": trial.suggest_int("min_data_in_leaf", 5, 200, log=True),
            "feature_fraction": trial.suggest_float("feature_fraction", 0.4, 1.0),
            "bagging_fraction": trial.suggest_float("bagging_fraction", 0.5, 1.0),
            "bagging_freq": 1,
            "lambda_l2": trial.suggest_float("lambda_l2", 1e-3, 10, log=True),
            "cat_smooth": trial.suggest_float("cat_smooth", 1, 50, log=True),
            # many-level categoricals: how many rows a level group needs and how hard its split is regularised
            "min_data_per_group": trial.suggest_int("min_data_per_group", 10, 200, log=True),
            "cat_l2": trial.suggest_float("cat_l2", 1, 50, log=True)}


def fit(data: MemberData, params: dict, seed: int = 0, trial: Any = None) -> Fitted:
    import lightgbm as lgb

    x_train, x_valid = data.trees
    dtrain = lgb.Dataset(x_train, label=data.y_train, categorical_feature="auto", free_raw_data=False)
    log: dict = {}

    def _report(env) -> None:  # noqa: ANN001 - lightgbm.callback.CallbackEnv
        if env.iteration % PRUNE_EVERY == 0:
            report_or_prune(trial, env.evaluation_result_list[0][2], env.iteration)

    full = {"objective": "binary", "metric": "binary_logloss", "verbosity": -1, "seed": seed,
            "num_threads": data.threads, "deterministic": True, "force_col_wise": True, **params}
    if data.increasing:
        full["monotone_constraints"] = data.monotone()
    if data.rounds is not None:  # a fixed number of rounds on every row: no early-stopping rows
        booster = lgb.train(full, dtrain, num_boost_round=max(1, data.rounds))
        return Fitted("lightgbm", booster, params, None, booster.current_iteration(), [])
    dvalid = lgb.Dataset(x_valid, label=data.y_valid, reference=dtrain)
    booster = lgb.train(full, dtrain, num_boost_round=MAX_ROUNDS, valid_sets=[dvalid], valid_names=["valid"],
                        callbacks=[lgb.early_stopping(EARLY_STOP, verbose=False), lgb.record_evaluation(log),
                                   _report])
    best = int(booster.best_iteration or booster.current_iteration())
    margin = np.asarray(booster.predict(x_valid, raw_score=True, num_iteration=best), "float64")
    return Fitted("lightgbm", booster, params, margin, best, [float(v) for v in log["valid"]["binary_logloss"]])


def predict(fitted: Fitted, data: MemberData, frame) -> np.ndarray:  # noqa: ANN001 - pandas DataFrame
    return np.asarray(fitted.model.predict(tree_frame(frame, data.schema), raw_score=True,
                                           num_iteration=fitted.best_iteration), "float64")


def save(fitted: Fitted, bundle: Path) -> None:
    fitted.model.save_model(str(Path(bundle) / "lightgbm.txt"), num_iteration=fitted.best_iteration)


def importance(fitted: Fitted, features: list[str]) -> dict[str, float]:
    gain = fitted.model.feature_importance(importance_type="gain", iteration=fitted.best_iteration)
    total = float(gain.sum()) or 1.0
    return {f: float(g) / total for f, g in zip(fitted.model.feature_name(), gain, strict=True)}


MEMBER = Member("lightgbm", defaults, suggest, fit, save, importance, predict)
