"""The simulator's drift options: covariate shift and concept drift after a date, on known truth (no servers)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import typer

from pipelines import simulate as sim

END = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
DAYS = 30
N = 3000


@pytest.fixture(scope="module")
def world():  # noqa: ANN201
    profiles, intent = sim.generate_profiles(N, 11, END - timedelta(days=DAYS), DAYS)
    events = sim.generate_events(profiles, intent, DAYS, 11, END)
    return profiles, intent, events, list(events)


def _drifted_world(spec_kwargs: dict):  # noqa: ANN202
    from pipelines.simulate_drift import DriftSpec, apply_drift

    profiles, intent = sim.generate_profiles(N, 11, END - timedelta(days=DAYS), DAYS)
    start = END - timedelta(days=DAYS / 2)
    spec = DriftSpec(start, **spec_kwargs)
    drifted_profiles, funnel, activity, count = apply_drift(profiles, intent, spec, 11)
    events = sim.generate_events(drifted_profiles, intent, DAYS, 11, END, funnel_intent=funnel, activity=activity)
    late = (pd.to_datetime(profiles["created_at"], utc=True) >= pd.Timestamp(start)).to_numpy()
    return profiles, drifted_profiles, intent, events, late, count


def test_no_drift_option_changes_nothing(world):
    from pipelines.simulate_drift import DriftSpec, apply_drift

    profiles, intent, events, items = world
    same, funnel, activity, count = apply_drift(profiles, intent, DriftSpec(END, 1.0, 1.0, None, False), 11)
    assert same is profiles and funnel is None and activity is None and count == 0
    assert list(sim.generate_events(profiles, intent, DAYS, 11, END, funnel_intent=funnel, activity=activity)) == items


def test_covariate_shift_moves_incomes_activity_and_brings_a_new_city_after_the_date():
    before, after, intent, events, late, count = _drifted_world(
        {"income_factor": 1.5, "activity_factor": 2.0, "new_city": "Indore"})
    assert count == late.sum() > N / 4
    income = pd.to_numeric(after["annual_income_inr"]) / pd.to_numeric(before["annual_income_inr"])
    assert np.allclose(income[late], 1.5, rtol=0.01) and np.allclose(income[~late], 1.0)
    assert (after["city"][~late] == before["city"][~late]).all()
    assert 0.2 < (after["city"][late] == "Indore").mean() < 0.4
    sessions = np.bincount(events.lead[events.topic == sim.WEB], minlength=N)
    base = sim.generate_events(before, intent, DAYS, 11, END)
    base_sessions = np.bincount(base.lead[base.topic == sim.WEB], minlength=N)
    assert sessions[late].sum() > 1.3 * base_sessions[late].sum()


def test_concept_drift_breaks_the_link_between_behaviour_and_conversion_after_the_date():
    before, after, intent, events, late, _ = _drifted_world({"concept": True})
    conv = events.outcome == "converted"
    web = np.bincount(events.lead[events.topic == sim.WEB], minlength=N)
    early_gap = intent[~late & conv].mean() - intent[~late & ~conv].mean()
    late_gap = intent[late & conv].mean() - intent[late & ~conv].mean()
    assert early_gap > 0.15 and abs(late_gap) < 0.08, (early_gap, late_gap)
    assert np.corrcoef(intent, web)[0, 1] > 0.2  # behaviour still follows the old intent


def test_drift_options_need_a_start_and_a_change():
    with pytest.raises(typer.BadParameter, match="--drift-from 2026"):
        sim._drift_spec(None, 1.5, 1.0, None, False)
    with pytest.raises(typer.BadParameter, match="needs a drift"):
        sim._drift_spec("2026-11-20", 1.0, 1.0, None, False)
    with pytest.raises(typer.BadParameter, match="not an ISO 8601"):
        sim._drift_spec("soon", 1.5, 1.0, None, False)
    assert sim._drift_spec("2026-11-20", 1.5, 1.0, None, False).active
