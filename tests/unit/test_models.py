"""Pure pieces of training: preprocessing, split, stacker, metrics, and the ensemble's explanations (no servers)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.evaluate import expected_calibration_error, lift_by_decile, metrics, top_share
from models.preprocess import Encoder, FeatureSchema, fit_schema, infer_categorical, mlp_arrays, tree_frame
from models.stack import choose_calibration, fit_stacker, tier_thresholds
from tests.unit.reference_path import reference_contributions, reference_explain, reference_logits, reference_score


def synthetic(n: int = 3000, seed: int = 0) -> pd.DataFrame:
    """Leads whose conversion rises with visits and depends on the channel; one useless feature."""
    rng = np.random.default_rng(seed)
    channel = rng.choice(["web", "referral", "ads"], n)
    visits = rng.poisson(3, n).astype(float)
    visits[rng.random(n) < 0.1] = np.nan
    z = -1.5 + 0.5 * np.nan_to_num(visits, nan=3) + np.select([channel == "referral", channel == "ads"], [1.0, -1.0])
    label = (rng.random(n) < 1 / (1 + np.exp(-z + 1.5))).astype(int)
    return pd.DataFrame({"lead_id": [f"L{i}" for i in range(n)],
                         "event_timestamp": pd.Timestamp("2024-01-01", tz="UTC"), "label": label, "visits": visits,
                         "channel": channel,
                         "opted_in": pd.Series(rng.random(n) < 0.5, dtype=object), "noise": rng.normal(size=n)})


def test_categories_are_fixed_at_fit_and_unseen_values_become_missing(tmp_path: Path) -> None:
    train = pd.DataFrame({"c": ["a", "b", "a", None], "x": [1.0, None, 3.0, 5.0], "f": [True, False, None, True]})
    assert infer_categorical(train, ["c", "x", "f"]) == ["c"]
    schema = fit_schema(train, ["c", "x", "f"])
    schema.save(tmp_path / "s.json")
    schema = FeatureSchema.load(tmp_path / "s.json")
    new = pd.DataFrame({"c": ["b", "zzz", None], "x": [2.0, None, 1.0], "f": [None, True, False]})
    trees = tree_frame(new, schema)
    assert list(trees["c"].cat.categories) == ["a", "b"]
    assert trees["c"].isna().tolist() == [False, True, True]
    assert trees["f"].tolist()[1:] == [1.0, 0.0] and np.isnan(trees["f"].iloc[0])
    x_num, x_cat = mlp_arrays(new, schema)
    assert x_cat[:, 0].tolist() == [2, 0, 0]  # code 0 = missing or unseen
    assert x_num.shape == (3, 4)  # x, f standardised + one missing flag each
    assert x_num[1, 2] == 1.0 and x_num[0, 3] == 1.0  # the flags mark the missing x and f
    with pytest.raises(ValueError, match="lacks feature column"):
        tree_frame(new.drop(columns=["x"]), schema)


def test_an_identifier_like_text_column_is_not_used_as_a_feature() -> None:
    frame = pd.DataFrame({"phone_hash": [f"h{i}" for i in range(500)], "x": np.arange(500.0)})
    schema = fit_schema(frame, ["phone_hash", "x"])
    assert schema.features == ["x"] and "phone_hash" in schema.dropped


def test_stacker_weights_are_non_negative_and_ignore_a_useless_member() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(size=5000)
    y = (rng.random(5000) < 1 / (1 + np.exp(-z))).astype(int)
    logits = {"good": z + rng.normal(scale=0.3, size=5000), "noise": rng.normal(size=5000),
              "inverted": -z}
    weights, _ = fit_stacker(logits, y)
    assert min(weights.values()) >= 0
    assert weights["good"] > 0.5 and weights["noise"] < 0.05 and weights["inverted"] < 1e-6
    method, losses, oof = choose_calibration(logits, y)
    assert set(oof) == {"platt", "isotonic"} and all(len(p) == len(y) for p in oof.values())
    assert method in ("platt", "isotonic") and losses[method] == min(losses.values())


def test_metrics_on_a_perfect_ranking_and_on_calibrated_scores() -> None:
    y = np.array([1] * 10 + [0] * 90)
    p = np.linspace(1, 0, 100)
    assert top_share(y, p, 0.1) == (1.0, 1.0)
    assert lift_by_decile(y, p)[0] == pytest.approx(10.0) and lift_by_decile(y, p)[1] == 0
    m = metrics(y, p)
    assert m["roc_auc"] == 1.0 and m["precision_at_10"] == 1.0 and m["recall_at_20"] == 1.0
    rng = np.random.default_rng(1)
    scores = rng.random(200_000)
    outcomes = (rng.random(200_000) < scores).astype(int)
    assert expected_calibration_error(outcomes, scores) < 0.01
    assert expected_calibration_error(outcomes, np.clip(scores + 0.2, 0, 1)) > 0.1
    cuts = tier_thresholds(scores)
    assert cuts["A"] > cuts["B"] > cuts["C"] > cuts["D"] == 0
    assert (scores >= cuts["A"]).mean() == pytest.approx(0.10, abs=0.001)


@pytest.fixture(scope="module")
def small_model(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 - FitResult
    from models.fit import FitOptions, fit_ensemble

    return fit_ensemble(synthetic(), tmp_path_factory.mktemp("fit"), "synthetic_v1",
                        FitOptions(trials=0, max_epochs=5, progress=False, increasing=("visits",), folds=3,
                                   drop_below=-1.0))  # every member kept, whatever its weight


def test_booster_contributions_plus_base_value_reproduce_the_raw_margin(small_model) -> None:  # noqa: ANN001
    ensemble = small_model.ensemble
    rows = small_model.split.test.head(200)
    logits = ensemble.member_logits(rows)
    for member in ("xgboost", "lightgbm"):
        contrib, base = ensemble.booster_contributions(member, rows)
        assert contrib.shape == (200, len(ensemble.feature_names))
        np.testing.assert_allclose(contrib.sum(axis=1) + base, logits[member], atol=1e-4)
    explained = ensemble.explain(rows, top_k=2)
    np.testing.assert_allclose([e["logit"] for e in explained], ensemble.stacked_logit(logits), atol=1e-4)
    first = explained[0]
    assert len(first["top_positive"]) <= 2 and all(c > 0 for _, _, c in first["top_positive"])
    assert all(c < 0 for _, _, c in first["top_negative"])
    assert set(first["contributions"]) == set(ensemble.feature_names)


def test_the_loaded_bundle_meets_the_serving_contract(small_model) -> None:  # noqa: ANN001
    from models.ensemble import LeadScorerEnsemble

    loaded = LeadScorerEnsemble.from_bundle(small_model.bundle)
    rows = small_model.split.test.head(20)[loaded.feature_names].copy()
    rows.loc[rows.index[0], ["visits", "channel", "opted_in"]] = [None, None, None]
    out = loaded.predict(None, rows)
    assert list(out.columns) == ["score", "p_linear", "p_lightgbm", "p_xgboost", "p_mlp"]
    assert out["score"].between(0, 1).all() and len(out) == 20
    assert loaded.feature_names == ["visits", "channel", "opted_in", "noise"]
    assert loaded.categorical_features == ["channel"] and loaded.feature_service == "synthetic_v1"
    assert set(loaded.weights) == {"linear", "xgboost", "lightgbm", "mlp"}
    assert set(loaded.tier_thresholds) == set("ABCD")
    more = rows.assign(visits=rows["visits"].fillna(0) + 5)
    assert (loaded.score(more)["score"].to_numpy() >= loaded.score(rows.assign(visits=rows["visits"].fillna(0)))
            ["score"].to_numpy() - 1e-12).all()  # --increasing visits holds for every lead


def test_explain_command_rows_carry_score_tier_and_signed_reasons(small_model, tmp_path: Path) -> None:  # noqa: ANN001
    from models.explain import explain_frame, read_leads

    path = tmp_path / "leads.csv"
    small_model.split.test.head(4).to_csv(path, index=False)
    rows = explain_frame(small_model.ensemble, read_leads(path, rows=3), top_k=2)
    assert len(rows) == 3 and rows[0]["lead_id"] == small_model.split.test["lead_id"].iloc[0]
    expected = small_model.ensemble.score(small_model.split.test.head(3))["score"].round(4).tolist()
    assert [r["score"] for r in rows] == expected
    assert all(r["tier"] in "ABCD" and len(r["top_positive"]) <= 2 for r in rows)
    with pytest.raises(ValueError, match="does not exist"):
        read_leads(tmp_path / "nope.csv", 1)


def assert_same_explanations(fast: list[dict], reference: list[dict], atol: float = 1e-9) -> None:
    assert len(fast) == len(reference)
    for a, b in zip(fast, reference, strict=True):
        for key in ("base_value", "unattributed", "logit"):
            assert a[key] == pytest.approx(b[key], rel=0, abs=atol), key
        assert list(a["contributions"]) == list(b["contributions"])
        np.testing.assert_allclose(list(a["contributions"].values()), list(b["contributions"].values()), rtol=0,
                                   atol=atol)
        for side in ("top_positive", "top_negative"):
            assert [(f, v) for f, v, _ in a[side]] == [(f, v) for f, v, _ in b[side]], side
            np.testing.assert_allclose([c for *_, c in a[side]], [c for *_, c in b[side]], rtol=0, atol=atol)


def assert_fast_path_matches_reference(ensemble, rows: pd.DataFrame, top_k: int = 3) -> None:  # noqa: ANN001
    """Scores, member log-odds, contributions and explanations of the array path equal the frame-based reference."""
    fast, ref = ensemble.member_logits(rows), reference_logits(ensemble, rows)
    assert list(fast) == list(ref)
    for m in ref:  # the boosters exactly; the network to float32 rounding at most
        np.testing.assert_allclose(fast[m], ref[m], rtol=0, atol=1e-9 if m != "mlp" else 1e-6)
    expected = reference_score(ensemble, rows)
    for got in (ensemble.score(rows), ensemble.score_and_explain(rows, top_k)[0]):
        assert list(got.columns) == list(expected.columns) and got.index.equals(expected.index)
        np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), rtol=0, atol=1e-9)
    for member in ("xgboost", "lightgbm"):
        for got, want in zip(ensemble.booster_contributions(member, rows), reference_contributions(ensemble, member,
                                                                                                    rows), strict=True):
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)
    want = reference_explain(ensemble, rows, top_k)
    assert_same_explanations(ensemble.explain(rows, top_k), want)
    assert_same_explanations(ensemble.score_and_explain(rows, top_k)[1], want)


def test_the_encoder_gives_what_tree_frame_and_mlp_arrays_give(tmp_path: Path) -> None:
    train = pd.DataFrame({"c": ["a", "b", "a", None, "7"], "x": [1.0, None, 3.0, 5.0, 2.0],
                          "f": pd.Series([True, False, None, True, False], dtype=object), "i": [1, 2, 3, 4, 5],
                          "k": pd.Categorical(["u", "v", "u", "v", None]), "b": [True, False, True, True, False]})
    schema = fit_schema(train, list(train.columns))
    assert schema.categorical == ["c", "k"]
    encoder = Encoder(schema)
    new = [
        train,
        pd.DataFrame({"c": ["b", "zzz", None, 7, np.nan], "x": [2.0, None, np.inf, -1.0, np.nan],
                      "f": pd.Series([None, True, np.False_, 1, 0.5], dtype=object), "i": [0, -3, 10**6, 2, 1],
                      "k": ["v", "w", None, "u", pd.NA], "b": [False, False, True, True, False]}),
        # kinds that take the reference path: text in a numeric feature, pandas extension dtypes
        pd.DataFrame({"c": pd.Series(["a", None, "b", "x", "7"], dtype="string"), "x": ["3.5", "many", None, "1", 2],
                      "f": pd.array([True, None, False, True, None], dtype="boolean"),
                      "i": pd.array([1, None, 3, 4, 5], dtype="Int64"), "k": pd.Categorical(["v", "u", None, "u", "v"]),
                      "b": pd.Series([1.0, None, 0.0, 1.0, 0.0])}),
        train.iloc[[2]],
        train.iloc[[]],
    ]
    for frame in new:
        encoded = encoder.encode(frame)
        trees = tree_frame(frame, schema)
        expected = np.column_stack([np.where(trees[f].isna(), np.nan, trees[f].cat.codes) if f in schema.categories
                                    else trees[f].to_numpy() for f in schema.features])
        expected = expected.reshape(len(frame), len(schema.features))
        np.testing.assert_array_equal(encoded.trees, expected)
        x_num, x_cat = encoded.mlp()
        ref_num, ref_cat = mlp_arrays(frame, schema)
        np.testing.assert_array_equal(x_num, ref_num)
        np.testing.assert_array_equal(x_cat, ref_cat)
        assert x_num.dtype == ref_num.dtype and x_cat.dtype == ref_cat.dtype
        by_records, grid, missing = encoder.encode_records(frame.to_dict("records"))  # serving's input
        np.testing.assert_array_equal(by_records.trees, expected)
        np.testing.assert_array_equal(by_records.codes, encoded.codes)
        np.testing.assert_array_equal(missing, frame.isna().sum(axis=1).to_numpy())
        assert len(grid) == len(frame)
    with pytest.raises(ValueError, match="lacks feature column"):
        encoder.encode(train.drop(columns=["x"]))


def test_the_array_path_scores_and_explains_as_the_frame_path(small_model) -> None:  # noqa: ANN001
    ensemble = small_model.ensemble
    rows = small_model.split.test.head(300).copy()
    rows.loc[rows.index[:40], "visits"] = None
    rows.loc[rows.index[30:70], "channel"] = None
    rows.loc[rows.index[60:100], "channel"] = "a channel never seen in training"
    rows.loc[rows.index[90:130], "opted_in"] = None
    rows.loc[rows.index[120:140], ["visits", "channel", "opted_in", "noise"]] = None
    assert_fast_path_matches_reference(ensemble, rows)
    for i in (0, 35, 65, 125):  # one lead at a time, as /score sends them
        assert_fast_path_matches_reference(ensemble, rows.iloc[[i]], top_k=2)
    served = rows[ensemble.feature_names].head(50)
    assert_fast_path_matches_reference(ensemble, pd.DataFrame.from_records(served.to_dict("records")))


def test_serving_scores_with_one_score_and_explain_call(small_model) -> None:  # noqa: ANN001
    from serving.model import LoadedModel

    ensemble = small_model.ensemble
    records = small_model.split.test.head(8)[ensemble.feature_names].to_dict("records")
    records[0]["channel"] = "unseen"
    records[1]["visits"] = None
    del records[2]["noise"]  # a feature neither stored nor sent: missing
    fast = LoadedModel("m", "1", ensemble).score(records, explain="shap", top_k=3)

    class Older:  # a registered version whose code predates score_records and score_and_explain
        def __init__(self, inner) -> None:  # noqa: ANN001
            self.inner = inner

        def __getattr__(self, name: str):  # noqa: ANN204
            if name in ("score_and_explain", "score_records"):
                raise AttributeError(name)
            return getattr(self.inner, name)

    older = LoadedModel("m", "1", Older(ensemble))
    assert_same_served(fast, older.score(records, explain="shap", top_k=3))
    assert all(r["top_positive"] or r["top_negative"] for r in fast)
    assert fast[2]["missing_features"] == 1 and fast[0]["explained_by"] == "shap"
    # an older version cannot explain by paths: it says it used SHAP
    assert older.score(records, explain="path")[0]["explained_by"] == "shap"
    by_path = LoadedModel("m", "1", ensemble).score(records, explain=True, top_k=3)
    assert [r["score"] for r in by_path] == [r["score"] for r in fast]
    assert {r["explained_by"] for r in by_path} == {"path"}


def assert_same_served(fast: list[dict], frame: list[dict], atol: float = 1e-6) -> None:
    """Serving's array path (leaf-sum margins, numpy MLP) against the frame path: equal up to float32 rounding."""
    assert len(fast) == len(frame)
    for a, b in zip(fast, frame, strict=True):
        assert set(a) == set(b)
        for key, value in a.items():
            if isinstance(value, float):
                assert value == pytest.approx(b[key], rel=0, abs=atol), key
            elif key == "members":
                assert [m["name"] for m in value] == [m["name"] for m in b[key]]
                np.testing.assert_allclose([m["probability"] for m in value], [m["probability"] for m in b[key]],
                                           rtol=0, atol=atol)
            elif key in ("top_positive", "top_negative"):
                assert [(c["feature"], c["value"]) for c in value] == [(c["feature"], c["value"]) for c in b[key]]
                np.testing.assert_allclose([c["contribution"] for c in value], [c["contribution"] for c in b[key]],
                                           rtol=0, atol=atol)
            elif key != "explanation":  # the sentence rounds the score; tier, counts and method are exact
                assert value == b[key], key


def rows_with_gaps(small_model, n: int) -> tuple:  # noqa: ANN001
    """(ensemble, n test rows with missing and unseen values, their encoding, each member's logits)."""
    ensemble = small_model.ensemble
    rows = small_model.split.test.head(n).copy()
    rows.loc[rows.index[:30], "visits"] = None
    rows.loc[rows.index[20:50], "channel"] = "never seen"
    encoded = ensemble.encode(rows)
    return ensemble, rows, encoded, ensemble._logits(encoded)


def test_serving_margins_and_network_agree_with_the_members_own_predictions(small_model) -> None:  # noqa: ANN001
    from models.tabular_net import NumpyNet, predict_logits

    ensemble, rows, encoded, logits = rows_with_gaps(small_model, 300)
    for member in ("xgboost", "lightgbm"):  # a booster's margin is its bias plus its leaves' outputs
        margin = ensemble.path_tables(member).margin(ensemble._leaves(member, encoded))
        np.testing.assert_allclose(margin, logits[member], rtol=0, atol=1e-5)
    net = ensemble._models["mlp"]
    x_num, x_cat = encoded.mlp()
    np.testing.assert_allclose(NumpyNet(net)(x_num, x_cat), predict_logits(net, x_num, x_cat), rtol=0, atol=1e-5)
    rng = np.random.default_rng(3)  # far outside the training range too, and every category level
    wild = (rng.normal(size=x_num.shape) * 5).astype("float32")
    codes = np.column_stack([rng.integers(0, len(e.weight), len(x_num)) for e in net.embeddings]).reshape(x_cat.shape)
    np.testing.assert_allclose(NumpyNet(net)(wild, codes), predict_logits(net, wild, codes), rtol=1e-5, atol=1e-4)
    records = rows[ensemble.feature_names].to_dict("records")
    served = ensemble.score_records(records, method=None)
    scored = ensemble.score(rows[ensemble.feature_names])
    np.testing.assert_allclose(served["score"], scored["score"].to_numpy(), rtol=0, atol=1e-6)
    assert not np.array_equal(served["score"], scored["score"].to_numpy())  # two computations, not one


def test_path_attributions_add_up_to_each_boosters_margin(small_model) -> None:  # noqa: ANN001
    import xgboost as xgb

    ensemble, rows, encoded, logits = rows_with_gaps(small_model, 200)
    for member in ("xgboost", "lightgbm"):
        contrib, base = ensemble._contributions(member, encoded, method="path")
        np.testing.assert_allclose(contrib.sum(axis=1) + base, logits[member], rtol=0, atol=1e-5)
        shap, _ = ensemble._contributions(member, encoded, method="shap")
        assert not np.allclose(contrib, shap)  # a different attribution of the same margin
        # the features a row's path never tests get nothing
        assert (np.abs(contrib) > 0).sum() <= (np.abs(shap) > 0).sum()
    booster = ensemble._models["xgboost"]  # XGBoost's own path attribution (Saabas) agrees with ours
    matrix = xgb.DMatrix(encoded.trees, feature_names=booster.feature_names, feature_types=booster.feature_types,
                         enable_categorical=True)
    saabas = booster.predict(matrix, pred_contribs=True, approx_contribs=True)
    np.testing.assert_allclose(ensemble._contributions("xgboost", encoded, method="path")[0], saabas[:, :-1],
                               rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="unknown explanation method"):
        ensemble.explain(rows.head(2), method="lime")


def test_score_records_gives_what_the_frame_path_gives(small_model) -> None:  # noqa: ANN001
    ensemble = small_model.ensemble
    frame = small_model.split.test.head(40)[ensemble.feature_names].copy()
    frame.loc[frame.index[:5], "visits"] = None
    frame.loc[frame.index[3:9], "channel"] = None
    records = frame.to_dict("records")
    scores = []
    for method in ("shap", "path", None):
        out = ensemble.score_records(records, top_k=4, method=method)
        scores.append(out["score"])
        scored, explained = ensemble.score_and_explain(frame, top_k=4, method=method or "path")
        # leaf-sum margins and the numpy network: float32 rounding from the members' own predict calls
        np.testing.assert_allclose(out["score"], scored["score"].to_numpy(), rtol=0, atol=1e-6)
        for m in ensemble.members:
            np.testing.assert_allclose(out[f"p_{m}"], scored[f"p_{m}"].to_numpy(), rtol=0, atol=1e-6)
        np.testing.assert_array_equal(out["missing"], frame.isna().sum(axis=1).to_numpy())
        if method is None:
            assert "explanations" not in out
            continue
        for a, b in zip(out["explanations"], explained, strict=True):
            for side in ("top_positive", "top_negative"):  # the same features and values, the same contributions
                assert a[side] == b[side]
            for key in ("base_value", "unattributed", "logit"):
                assert a[key] == pytest.approx(b[key], rel=0, abs=1e-6), key
    assert all(np.array_equal(scores[0], s) for s in scores)  # one score per lead, whatever explains it
