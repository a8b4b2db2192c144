"""Cross-fitting: no row's out-of-fold prediction comes from a model fitted or stopped on that row."""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.crossfit import cross_fit, make_folds
from models.fit import FitOptions
from models.members import Fitted, Member
from models.preprocess import fit_schema
from models.stack import fit_stacker


def _memorizer(seen: list[set]) -> Member:
    """A member that remembers the labels it was fitted (and stopped) on and predicts them back: +-5 log-odds for a
    lead it has seen, 0 for one it has not. Fitted in-sample it looks perfect; out of fold it knows nothing."""

    def fit(data, params, seed=0, trial=None):  # noqa: ANN001, ANN202
        rows = {**dict(zip(data.train["lead_id"], data.y_train, strict=True)),
                **dict(zip(data.valid["lead_id"], data.y_valid, strict=True))}
        seen.append(set(rows))
        return Fitted("memorizer", rows, params, np.zeros(len(data.valid)), 1, [0.0])

    def predict(fitted, data, frame):  # noqa: ANN001, ANN202
        return np.array([(10.0 * fitted.model[i] - 5.0) if i in fitted.model else 0.0 for i in frame["lead_id"]])

    return Member("memorizer", dict, dict, fit, lambda *a: None, lambda *a: {}, predict)


def test_no_row_is_predicted_by_a_model_that_saw_its_label() -> None:
    rng = np.random.default_rng(0)
    n = 1000
    frame = pd.DataFrame({"lead_id": [f"L{i}" for i in range(n)], "label": rng.integers(0, 2, n),
                          "x": rng.normal(size=n)}, index=np.arange(100, 100 + n))  # index labels, not positions
    folds = make_folds(frame, 5)
    held = np.concatenate(folds.held_out)
    assert sorted(held) == sorted(frame.index)  # every row held out exactly once
    for k in range(5):
        assert not set(folds.held_out[k]) & (set(folds.fit_rows[k]) | set(folds.stop_rows[k]))
        assert len(folds.stop_rows[k]) > 0
    seen: list[set] = []
    schema = fit_schema(frame, ["x"])
    result = cross_fit(_memorizer(seen), {}, frame, folds, schema, FitOptions(progress=False))
    assert np.all(result.oof_logit == 0.0)  # a memorizer knows nothing about rows it never saw
    for k, ids in enumerate(seen):
        assert not ids & set(frame.loc[folds.held_out[k], "lead_id"])
    # the stacker, fitted on those predictions beside a member with a real signal, gives the memorizer no weight
    signal = frame["label"].to_numpy() * 2.0 - 1.0 + rng.normal(scale=1.5, size=n)
    weights, _ = fit_stacker({"memorizer": result.oof_logit, "signal": signal}, frame["label"].to_numpy())
    assert weights["memorizer"] < 1e-6 < weights["signal"]
    in_sample = _memorizer([]).predict(_memorizer([]).fit(_Rows(frame), {}), None, frame)
    leaked, _ = fit_stacker({"memorizer": in_sample, "signal": signal}, frame["label"].to_numpy())
    assert leaked["memorizer"] > 0.1  # what the weights would be if rows' own predictions were used


class _Rows:
    """Every row as training data, none held out: the in-sample fit the test contrasts with."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.train, self.valid = frame, frame.iloc[:0]
        self.y_train, self.y_valid = frame["label"].to_numpy(), frame["label"].to_numpy()[:0]


def test_the_equal_blend_is_written_as_a_stacker_and_the_learned_one_is_kept_where_a_member_is_noise() -> None:
    from models.stack import _loss, choose_combiner, fit_equal

    rng = np.random.default_rng(4)
    n = 4000
    z = rng.normal(size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(int)
    # members with the same signal and independent noise: learned weights only add variance
    twins = {f"m{i}": 3.0 * i + (i + 1) * (z + rng.normal(scale=1.0, size=n)) for i in range(3)}
    weights, b = fit_equal(twins, y)
    stats = {m: (v.mean(), v.std()) for m, v in twins.items()}
    blend = sum((v - stats[m][0]) / stats[m][1] for m, v in twins.items())
    direct = b + sum(weights[m] * twins[m] for m in twins)
    assert np.corrcoef(direct, blend)[0, 1] > 0.999999 and min(weights.values()) > 0
    assert _loss(y, direct) < _loss(y, np.zeros(n) + np.log(y.mean() / (1 - y.mean())))
    # one good member and one that is noise: the learned stacker must win
    lopsided = {"good": z + rng.normal(scale=0.3, size=n), "noise": rng.normal(size=n)}
    assert choose_combiner(lopsided, y)[0] == "stacker"
