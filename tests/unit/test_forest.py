"""models/forest.py walks XGBoost's and LightGBM's trees to the same leaves as their own pred_leaf."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest
import xgboost as xgb

from models.forest import Forest

TYPES = ["float", "c", "float", "c", "float", "float"]
CATEGORICAL = [j for j, t in enumerate(TYPES) if t == "c"]


def training_data() -> tuple[np.ndarray, np.ndarray]:
    """Numbers (one with many exact zeros), categories; missing values in every column."""
    rng = np.random.default_rng(7)
    n = 3000
    X = np.column_stack([rng.normal(size=n), rng.integers(0, 12, n), rng.exponential(3, n),
                         rng.integers(0, 5, n), rng.integers(0, 4, n).astype(float),
                         np.where(rng.random(n) < 0.4, 0.0, rng.normal(size=n))]).astype("float32")
    logit = (X[:, 0] + np.isin(X[:, 1], [2, 3, 7]) * 1.5 - 0.3 * X[:, 2] + (X[:, 3] == 4) - 0.5 * X[:, 4]
             + (X[:, 5] == 0) * 0.8)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    X[rng.random(X.shape) < 0.15] = np.nan
    return X, y


@pytest.fixture(scope="module")
def boosters() -> dict:
    X, y = training_data()
    xgb_booster = xgb.train({"max_depth": 6, "eta": 0.3, "max_cat_to_onehot": 1, "objective": "binary:logistic",
                             "tree_method": "hist", "nthread": 1},
                            xgb.DMatrix(X, label=y, feature_types=TYPES, enable_categorical=True), num_boost_round=40)
    models = {"xgboost": xgb_booster}
    for name, params in {"lightgbm": {}, "lightgbm_zero_as_missing": {"zero_as_missing": True},
                         "lightgbm_no_nan": {"use_missing": False}}.items():
        data = lgb.Dataset(X, label=y, categorical_feature=CATEGORICAL, free_raw_data=False)
        models[name] = lgb.train({"objective": "binary", "num_leaves": 31, "min_data_per_group": 5,
                                  "cat_smooth": 1, "verbose": -1, "num_threads": 1, **params}, data, 40)
    return models


def forest(name: str, booster) -> Forest:  # noqa: ANN001
    return Forest.from_xgboost(booster) if name == "xgboost" else Forest.from_lightgbm(booster)


def pred_leaf(name: str, booster, X: np.ndarray) -> np.ndarray:  # noqa: ANN001
    if name == "xgboost":
        return booster.predict(xgb.DMatrix(X, feature_types=TYPES, enable_categorical=True), pred_leaf=True)
    return booster.predict(X.astype("float64"), pred_leaf=True, num_threads=1)


def hard_rows(boosters: dict, rng: np.random.Generator, n: int = 4000) -> np.ndarray:
    """Values exactly on every split threshold and a hair beside it, zeros, missing values, unseen and negative
    categories."""
    cuts: dict[int, list] = {j: [] for j in range(len(TYPES))}
    frame = boosters["xgboost"].trees_to_dataframe()
    for j in cuts:
        cuts[j] += frame.loc[frame.Feature == f"f{j}", "Split"].dropna().tolist()
    for name, booster in boosters.items():
        if name != "xgboost":
            for _, row in booster.trees_to_dataframe().dropna(subset=["split_feature"]).iterrows():
                if row.decision_type == "<=":
                    cuts[int(str(row.split_feature).replace("Column_", ""))].append(float(row.threshold))
    columns = []
    for j, kind in enumerate(TYPES):
        if kind == "c":
            pool = np.arange(-3, 40, dtype="float64")  # seen, unseen (past the trained range) and negative codes
        else:
            c64 = np.asarray(cuts[j], "float64")
            c64 = c64[np.abs(c64) < 3e38]  # LightGBM may split at +-1e300: past float32, which XGBoost takes
            c32 = c64.astype("float32").astype("float64")
            pool = np.concatenate([c64, c32, np.nextafter(c64, -np.inf), np.nextafter(c64, np.inf),
                                   [-3e38, 3e38, 0.0, -0.0, 1e-36, -1e-36]])  # XGBoost refuses inf
        column = rng.choice(pool, n)
        column[rng.random(n) < 0.2] = np.nan
        columns.append(column)
    return np.column_stack(columns)


@pytest.mark.parametrize("name", ["xgboost", "lightgbm", "lightgbm_zero_as_missing", "lightgbm_no_nan"])
def test_the_walk_reaches_the_boosters_own_leaves_on_hard_values(boosters: dict, name: str) -> None:
    walk = forest(name, boosters[name])
    assert walk.cat_rows.max() > 0, "the fixture must have categorical splits to test them"
    X = hard_rows(boosters, np.random.default_rng(1))
    expected = pred_leaf(name, boosters[name], X.astype("float32") if name == "xgboost" else X)
    np.testing.assert_array_equal(walk.leaves(X), expected)
    np.testing.assert_array_equal(walk.leaves_numpy(X), expected)


@pytest.mark.parametrize("name", ["xgboost", "lightgbm"])
def test_the_walk_takes_any_batch_size(boosters: dict, name: str) -> None:
    walk = forest(name, boosters[name])
    X = hard_rows(boosters, np.random.default_rng(2), 300)
    for rows in (1, 2, 7, 300):
        expected = pred_leaf(name, boosters[name], X[:rows].astype("float32") if name == "xgboost" else X[:rows])
        np.testing.assert_array_equal(walk.leaves(X[:rows]), expected)
    assert walk.leaves(X[:0]).shape == (0, walk.n_trees)


@pytest.mark.parametrize("name", ["xgboost", "lightgbm"])
def test_a_value_on_a_threshold_goes_the_boosters_way(boosters: dict, name: str) -> None:
    """XGBoost sends x == split right (left is x < split), LightGBM left (x <= threshold): one value apart."""
    walk = forest(name, boosters[name])
    if name == "xgboost":  # the first tree's root split, as the booster itself reports it
        root = boosters[name].trees_to_dataframe().iloc[0]
        feature, cut = int(root.Feature[1:]), float(np.float32(root.Split))
    else:
        root = boosters[name].dump_model()["tree_info"][0]["tree_structure"]
        feature, cut = int(root["split_feature"]), float(root["threshold"])
        assert root["decision_type"] == "<=", "the fixture's first root splits a number"
    X = np.zeros((3, len(TYPES)))
    X[:, feature] = [cut, np.nextafter(cut, -np.inf), np.nextafter(cut, np.inf)]
    if name == "xgboost":
        X[1, feature] = np.nextafter(np.float32(cut), np.float32(-np.inf))
        X[2, feature] = np.nextafter(np.float32(cut), np.float32(np.inf))
    leaves = walk.leaves(X)
    on, below, above = leaves[:, 0]
    assert below != above
    assert on == (above if name == "xgboost" else below)
    np.testing.assert_array_equal(leaves, pred_leaf(name, boosters[name], X.astype("float32")
                                                    if name == "xgboost" else X))
