"""The train / test split a data scientist chooses: random, time (share or cut-off date), a marker column."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.split import SplitSpec, split_frame
from tests.unit.test_models import synthetic


def test_random_split_is_deterministic_disjoint_and_keeps_the_label_share() -> None:
    frame = synthetic()
    a = split_frame(frame, SplitSpec.parse("random"))
    b = split_frame(frame.sample(frac=1, random_state=3), SplitSpec.parse("random"))
    assert a.method == "random" and a.marker is None
    assert set(a.test["lead_id"]) == set(b.test["lead_id"])  # row order does not matter, only the leads
    assert not set(a.train["lead_id"]) & set(a.test["lead_id"])
    assert len(a.train) + len(a.test) == len(frame) and len(a.test) == pytest.approx(0.2 * len(frame), abs=2)
    for part in (a.train, a.test):
        assert abs(part["label"].mean() - frame["label"].mean()) < 0.005


def test_time_split_by_share_and_by_cutoff_date() -> None:
    frame = synthetic(1000)
    frame["event_timestamp"] = pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(np.arange(1000), "h")
    auto = split_frame(frame.sample(frac=1, random_state=1))
    assert auto.method == "time" and auto.train["event_timestamp"].max() < auto.test["event_timestamp"].min()
    cut = split_frame(frame, SplitSpec.parse("time", cutoff="2024-02-01"))
    assert (cut.test["event_timestamp"] >= pd.Timestamp("2024-02-01", tz="UTC")).all()
    assert (cut.train["event_timestamp"] < pd.Timestamp("2024-02-01", tz="UTC")).all()
    assert len(cut.test) == 1000 - 31 * 24
    with pytest.raises(ValueError, match="is not a date"):
        SplitSpec.parse("time", cutoff="next tuesday")
    with pytest.raises(ValueError, match="has 0 rows"):
        split_frame(frame, SplitSpec.parse("time", cutoff="2030-01-01"))
    with pytest.raises(ValueError, match="same event time"):
        split_frame(synthetic(), SplitSpec.parse("time"))


def test_a_marker_column_is_honoured_exactly_and_is_not_a_feature() -> None:
    frame = synthetic(1200)
    frame["official"] = np.where(np.arange(1200) % 3 == 0, "test", np.where(np.arange(1200) % 3 == 1, "train", "x"))
    split = split_frame(frame, SplitSpec.parse("column:official", test_values="test", train_values="train"))
    assert set(split.test["official"]) == {"test"} and set(split.train["official"]) == {"train"}
    assert len(split.test) == 400 and len(split.train) == 400 and split.marker == "official"
    rest = split_frame(frame, SplitSpec.parse("column:official", test_values="test"))
    assert len(rest.train) == 800 and set(rest.train["official"]) == {"train", "x"}
    from models.fit import feature_columns

    assert "official" not in feature_columns(frame, rest.marker)
    with pytest.raises(ValueError, match="needs --test-values"):
        SplitSpec.parse("column:official")
    with pytest.raises(ValueError, match="no column 'nope'"):
        split_frame(frame, SplitSpec.parse("column:nope", test_values="1"))
    with pytest.raises(ValueError, match="use auto, random, time or column:NAME"):
        SplitSpec.parse("stratified")
    with pytest.raises(ValueError, match="both converted and not converted"):
        split_frame(frame.assign(label=0))
