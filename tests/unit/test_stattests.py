"""The monitor's whole-column drift scores are Evidently's own: same method, same score, same verdict."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from monitoring.stattests import METHODS, choose_method, clean, column_drift


def evidently_drift(ref: pd.DataFrame, cur: pd.DataFrame, numerical: list[str], categorical: list[str]) -> dict:
    """column -> (display method, score) from a real Evidently 0.7 DataDriftPreset run."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
    snap = Report([DataDriftPreset(columns=numerical + categorical)]).run(
        Dataset.from_pandas(cur, data_definition=definition), Dataset.from_pandas(ref, data_definition=definition))
    return {m["config"]["column"]: (m["config"]["method"], m["value"]) for m in snap.dict()["metrics"]
            if m["config"]["type"].endswith("ValueDrift")}


def frames(n_ref: int, n_cur: int, seed: int, shift: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)

    def make(n: int, s: float) -> pd.DataFrame:
        income = rng.lognormal(3 + s, 0.6, n)
        income[rng.random(n) < 0.05] = np.nan  # missing values are left out on both sides
        return pd.DataFrame({
            "income": income,
            "visits": rng.poisson(3 + 2 * s, n).astype("float64"),
            "rating": rng.integers(1, 4 + int(s > 0), n).astype("float64"),  # few distinct values
            "owner": (rng.random(n) < 0.4 + 0.2 * s).astype("float64"),  # two values
            "city": rng.choice(["Pune", "Delhi", "Mumbai"] + (["Surat"] if s else []), n),
            "channel": np.where(rng.random(n) < 0.5 + 0.2 * s, "web", None),
        })
    return make(n_ref, 0.0), make(n_cur, shift)


@pytest.mark.parametrize(("n_ref", "n_cur", "shift"), [(5000, 8000, 0.3), (5000, 8000, 0.0), (600, 900, 0.3),
                                                       (400, 20000, 0.0)])
def test_methods_scores_and_verdicts_equal_evidentlys(n_ref: int, n_cur: int, shift: float) -> None:
    ref, cur = frames(n_ref, n_cur, seed=n_ref + n_cur, shift=shift)
    numerical, categorical = ["income", "visits", "rating", "owner"], ["city", "channel"]
    expected = evidently_drift(ref, cur, numerical, categorical)
    methods = set()
    for name in numerical + categorical:
        kind = "numerical" if name in numerical else "categorical"
        ours = column_drift(name, ref[name], cur[name], kind)
        assert ours is not None
        methods.add(ours.method)
        assert ours.display_name == expected[name][0], name
        assert ours.score == pytest.approx(expected[name][1], rel=1e-9, abs=1e-12), name
    assert methods == ({"wasserstein", "jensenshannon"} if n_ref > 1000 else {"ks", "chisquare", "z"})


def test_a_method_given_is_used_and_an_unknown_one_is_refused() -> None:
    ref, cur = frames(3000, 3000, seed=1, shift=0.5)
    forced = column_drift("income", ref["income"], cur["income"], "numerical", method="ks")
    assert forced.method == "ks" and forced.drifted and forced.score < METHODS["ks"][1]
    with pytest.raises(ValueError, match="unknown drift method"):
        column_drift("income", ref["income"], cur["income"], "numerical", method="psi-ish")


def test_no_value_on_one_side_gives_no_score_and_infinities_are_left_out() -> None:
    assert column_drift("x", pd.Series([np.nan] * 5), pd.Series([1.0, 2.0]), "numerical") is None
    values = clean(pd.Series([1.0, np.inf, -np.inf, np.nan, 3.0]), "numerical")
    assert values.tolist() == [1.0, 3.0]
    assert choose_method(pd.Series(np.arange(2000.0)), pd.Series(np.arange(10.0)), "numerical") == "wasserstein"
