"""Every spec type trains, registers and scores: int (with and without gaps), float, bool, string, date, missing in
each.

Registration once failed for any `type: int` feature, after the whole fit: the input example held int64 values and
the signature said double, and MLflow refuses int64 -> double. Here the model is logged and registered in a real
MLflow registry (SQLite) and loaded back as pyfunc, fed the dtypes the offline store hands back.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.fit import FitOptions, fit_ensemble

pytestmark = pytest.mark.slow


def every_type(n: int = 800, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 80, n)
    visits = rng.integers(0, 20, n).astype("float64")
    visits[rng.random(n) < 0.15] = np.nan  # an int feature with gaps comes back as float64
    spend = rng.gamma(2.0, 500.0, n)
    spend[rng.random(n) < 0.1] = np.nan
    salaried = pd.Series(rng.random(n) < 0.5, dtype=object)
    salaried[rng.random(n) < 0.1] = None
    city = pd.Series(rng.choice(["Pune", "Delhi", "Chennai"], n), dtype=object)
    city[rng.random(n) < 0.1] = None
    days = rng.integers(0, 400, n)  # a date: the lead's account opened this many days before the event
    opened = pd.Series(pd.Timestamp("2024-01-01", tz="UTC") - pd.to_timedelta(days, unit="D"))
    opened[rng.random(n) < 0.1] = pd.NaT
    z = -2 + 0.03 * (age - 40) + 0.15 * np.nan_to_num(visits, nan=5) + 0.8 * (city == "Pune") - 0.004 * days
    label = (rng.random(n) < 1 / (1 + np.exp(-z))).astype("int64")
    return pd.DataFrame({"lead_id": [f"L{i}" for i in range(n)], "event_timestamp": pd.Timestamp("2024-01-01",
                         tz="UTC"), "label": label, "age_years": age.astype("int64"), "visits": visits,
                         "spend_inr": spend, "is_salaried": salaried, "home_city": city, "account_opened": opened})


def test_a_spec_of_every_type_trains_registers_loads_and_scores(tmp_path) -> None:  # noqa: ANN001
    import mlflow

    from models.register import input_example, log_ensemble

    frame = every_type()
    result = fit_ensemble(frame, tmp_path / "fit", "every_type_v1",
                          FitOptions(trials=0, folds=3, max_epochs=5, progress=False, drop_below=-1.0))
    example = input_example(result.split.train, result.schema)
    assert len(example) == 2 and example.iloc[1].isna().all()
    real_rows = {tuple(r) for r in result.split.train[result.schema.features].astype(str).itertuples(index=False)}
    assert tuple(example.iloc[0].astype(str)) not in real_rows  # made-up values, not a lead's row
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    mlflow.set_experiment("every-type")
    with mlflow.start_run():
        info = log_ensemble(result.bundle, example, "every-type")
    assert str(info.registered_model_version) == "1"
    model = mlflow.pyfunc.load_model("models:/every-type/1")
    test = result.split.test[result.schema.features].head(50).reset_index(drop=True)
    assert test["age_years"].dtype == "int64"  # the dtype that used to fail
    out = model.predict(test)
    assert out["score"].between(0, 1).all() and len(out) == 50
    gaps = test.assign(age_years=test["age_years"].astype("float64"))
    gaps.loc[0, ["age_years", "visits", "spend_inr", "is_salaried", "home_city", "account_opened"]] = [
        np.nan, np.nan, np.nan, None, None, pd.NaT]
    scored = model.predict(gaps)["score"]
    np.testing.assert_allclose(scored.iloc[1:], out["score"].iloc[1:], atol=1e-12)
    assert 0 < scored.iloc[0] < 1
    records = [{"age_years": 35, "visits": 3, "spend_inr": 1200.5, "is_salaried": True, "home_city": "Pune",
                "account_opened": "2026-05-01"},
               {"age_years": None, "visits": None, "spend_inr": None, "is_salaried": None, "home_city": None,
                "account_opened": None}]
    served = result.ensemble.score_records(records)  # what the scoring service calls
    framed = result.ensemble.score(pd.DataFrame(records))["score"].to_numpy()
    np.testing.assert_allclose(served["score"], framed, atol=1e-6)
    assert result.schema.dates == ["account_opened"]


def test_a_date_is_read_as_days_before_the_event_in_training_and_before_now_when_scored(tmp_path) -> None:  # noqa: ANN001
    result = fit_ensemble(every_type(), tmp_path / "fit", "every_type_v1",
                          FitOptions(trials=0, folds=3, max_epochs=5, progress=False, drop_below=-1.0))
    base = {"age_years": 40, "visits": 5.0, "spend_inr": 900.0, "is_salaried": False, "home_city": "Delhi"}
    now = pd.Timestamp.now(tz="UTC")
    ages = [3, 150, 390]
    scored_now = result.ensemble.score_records([{**base, "account_opened": (now - pd.Timedelta(days=d)).isoformat()}
                                                for d in ages])["score"]
    event = pd.Timestamp("2023-06-01", tz="UTC")  # a training row: measured back from its own event time
    rows = pd.DataFrame([{**base, "event_timestamp": event, "account_opened": event - pd.Timedelta(days=d)}
                         for d in ages])
    np.testing.assert_allclose(result.ensemble.score(rows)["score"], scored_now, atol=1e-6)
    assert scored_now[0] > scored_now[2]  # the label falls with the days since opening
