"""Tuning keeps a member's defaults unless the best trial beats them beyond the noise of the comparison."""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.members import Fitted, Member, MemberData
from models.preprocess import fit_schema
from models.tune import tune_member, within_noise


def test_a_gain_inside_one_standard_error_keeps_the_defaults() -> None:
    rng = np.random.default_rng(0)
    defaults = rng.exponential(0.5, 2000)
    noisy = defaults + rng.normal(0.0, 0.2, 2000) - 0.001  # a mean gain of 0.001 against an error of about 0.0045
    assert within_noise(defaults, noisy).startswith("defaults kept")
    assert within_noise(defaults, defaults - 0.01) == ""  # the same gain on every row: far beyond its error
    # 2 standard errors of gain beat the defaults after one trial, not as the best of 50 (sqrt(2 ln 50) = 2.8)
    twice = defaults + rng.normal(0.0, 0.2, 2000)
    twice -= twice.mean() - defaults.mean() + 2 * np.std(defaults - twice, ddof=1) / np.sqrt(2000)
    assert within_noise(defaults, twice, trials=1) == ""
    assert within_noise(defaults, twice, trials=50).startswith("defaults kept")


def _member(signal: np.ndarray, y: np.ndarray) -> Member:
    """A member whose defaults predict `signal` and whose trials add noise of a trial-chosen size and seed: any trial
    that looks better than the defaults does so by chance."""

    def fit(data, params, seed=0, trial=None):  # noqa: ANN001, ANN202
        return Fitted("noisy", params, params, None, 1, [])

    def predict(fitted, data, frame):  # noqa: ANN001, ANN202
        p = fitted.model
        noise = np.random.default_rng(p.get("seed", 0)).normal(0.0, 1.0, len(frame))
        return signal[frame.index.to_numpy()] + p.get("scale", 0.0) * noise

    def suggest(trial, data=None):  # noqa: ANN001, ANN202
        return {"scale": trial.suggest_float("scale", 0.01, 0.3), "seed": trial.suggest_int("seed", 0, 10_000)}

    return Member("noisy", lambda: {"scale": 0.0, "seed": 0}, suggest, fit, lambda *a: None, lambda *a: {}, predict)


def test_a_trial_that_wins_by_chance_does_not_replace_the_defaults() -> None:
    rng = np.random.default_rng(1)
    n = 600
    y = rng.integers(0, 2, n)
    signal = 1.5 * (y - 0.5) + rng.normal(0.0, 1.5, n)
    frame = pd.DataFrame({"lead_id": [f"L{i}" for i in range(n)], "label": y, "x": rng.normal(size=n)})
    data = MemberData(fit_schema(frame, ["x"]), frame, frame, y, y)
    study = tune_member(_member(signal, y), [(data, frame)], trials=40, timeout=None, progress=False)
    values = [t["value"] for t in study.trials if t["value"] is not None]
    assert min(values[1:]) < values[0]  # some noisy trial scored better than the defaults on these rows...
    assert study.defaults_kept.startswith("defaults kept")  # ...by less than its standard error
    assert study.best_params == {"scale": 0.0, "seed": 0}
    assert study.best_value == values[0]


def test_a_real_gain_replaces_the_defaults() -> None:
    rng = np.random.default_rng(2)
    n = 600
    y = rng.integers(0, 2, n)
    signal = 1.5 * (y - 0.5) + rng.normal(0.0, 1.5, n)
    member = _member(signal, y)
    weak = Member(member.name, lambda: {"scale": 3.0, "seed": 0}, member.suggest, member.fit, member.save,
                  member.importance, member.predict)  # defaults drowned in noise: any trial is far better
    frame = pd.DataFrame({"lead_id": [f"L{i}" for i in range(n)], "label": y, "x": rng.normal(size=n)})
    data = MemberData(fit_schema(frame, ["x"]), frame, frame, y, y)
    study = tune_member(weak, [(data, frame)], trials=10, timeout=None, progress=False)
    assert study.defaults_kept == ""
    assert study.best_params["scale"] < 3.0
