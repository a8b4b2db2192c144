"""The linear member: a readable logistic regression whose per-feature terms add up to its log-odds."""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.crossfit import member_data
from models.fit import FitOptions, feature_columns
from models.members import linear
from models.preprocess import Encoder, fit_schema
from tests.unit.test_models import synthetic


def test_terms_add_up_and_an_increasing_feature_never_lowers_the_log_odds() -> None:
    frame = synthetic(2000)
    schema = fit_schema(frame, feature_columns(frame))
    options = FitOptions(increasing=("visits",), progress=False)
    data = member_data(schema, frame.iloc[:1500], frame.iloc[1500:], options)
    fitted = linear.fit(data, linear.defaults())
    model = fitted.model
    rows = frame.iloc[1500:].copy()
    rows.loc[rows.index[:30], "channel"] = "never seen"
    rows.loc[rows.index[20:50], "visits"] = None
    trees = Encoder(schema).encode(rows).trees
    contrib, base = model.contributions(trees)
    np.testing.assert_allclose(base + contrib.sum(axis=1), model.logit(trees), atol=1e-9)
    np.testing.assert_allclose(linear.predict(fitted, data, rows), model.logit(trees))
    assert np.all(np.isfinite(model.logit(trees)))
    grid = pd.DataFrame({**{c: rows[c].iloc[[60] * 40].to_numpy() for c in schema.features},
                         "visits": np.linspace(0, 30, 40)})
    assert np.all(np.diff(model.logit(Encoder(schema).encode(grid).trees)) >= -1e-12)
    # referral converts more than ads in the synthetic data: the coefficients say so
    levels = schema.categories["channel"]
    table = model.categorical["channel"]
    assert table[levels.index("referral") + 1] > table[levels.index("ads") + 1]
    assert fitted.history and fitted.history[0] < 0.69  # better than a coin on the held-out rows
