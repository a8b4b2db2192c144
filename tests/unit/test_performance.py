"""Realized quality: pending leads are not negatives, cohorts mature by the label lag."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from monitoring.performance import cohorts, maturity_window, outcomes

NOW = datetime(2026, 6, 29, tzinfo=UTC)  # a Monday


def scored(n: int, seed: int = 0, weeks: int = 4) -> pd.DataFrame:
    """Leads scored over `weeks` weeks before NOW; a converting lead's label comes 5-15 days after its score."""
    rng = np.random.default_rng(seed)
    at = pd.Timestamp(NOW) - pd.to_timedelta(rng.uniform(0, weeks * 7, n), unit="D")
    score = rng.uniform(0.02, 0.98, n)
    converts = rng.random(n) < score
    lag = pd.to_timedelta(rng.uniform(5, 15, n), unit="D")
    label_at = at + lag
    arrived = converts & (label_at <= pd.Timestamp(NOW))
    return pd.DataFrame({"scored_at": at, "score": score, "label": np.where(arrived, 1.0, np.nan),
                         "label_at": pd.Series(label_at).where(arrived)})


def test_unlabelled_leads_are_pending_until_the_maturity_window_then_negative() -> None:
    frame = scored(4000)
    window, source = maturity_window(frame)
    assert "observed label lags" in source and timedelta(days=9) < window < timedelta(days=15)
    y = outcomes(frame, NOW, window)
    young = (pd.Timestamp(NOW) - frame["scored_at"]) < pd.Timedelta(window)
    assert y[young & frame["label"].isna()].isna().all()  # pending, not 0
    assert (y[~young & frame["label"].isna()] == 0).all()
    found = cohorts(frame, NOW, window)
    assert [c.matured for c in found] == [True, True, False, False]
    assert all(not c.metrics for c in found if not c.matured)


def test_counting_pending_leads_as_negatives_would_show_a_false_quality_drop() -> None:
    frame = scored(6000, seed=1)
    window, _ = maturity_window(frame)
    honest = [c for c in cohorts(frame, NOW, window) if c.metrics]
    naive = cohorts(frame, NOW, timedelta(0))  # every unlabelled lead a negative at once
    latest = naive[-1]  # the newest week: most conversions have not arrived yet
    assert honest and latest.metrics
    # the honest matured cohorts show the scores' real ranking; the naive newest cohort looks much worse
    assert min(c.metrics["roc_auc"] for c in honest) > latest.metrics["roc_auc"] + 0.05
    assert latest.metrics["ece"] > max(c.metrics["ece"] for c in honest)


def test_a_given_window_wins_and_no_lag_falls_back_to_the_default() -> None:
    frame = scored(500)
    assert maturity_window(frame, timedelta(days=3)) == (timedelta(days=3), "given")
    none = frame.assign(label=np.nan, label_at=pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns, UTC]"))
    window, source = maturity_window(none)
    assert window == timedelta(days=30) and source.startswith("default")
    assert all(not c.metrics for c in cohorts(none, NOW, window))
    with pytest.raises(KeyError):
        maturity_window(frame.drop(columns="label_at"))
