"""A version's monitoring reference: its training rows carry out-of-sample scores, and its summary holds no row."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from tests.unit.test_models import synthetic

pytestmark = pytest.mark.slow


def test_reference_scores_are_out_of_fold_not_in_sample(tmp_path: Path) -> None:
    from models.fit import FitOptions, fit_ensemble
    from monitoring.reference import reference_frame, summarize

    frame = synthetic(1500)
    options = FitOptions(members=("lightgbm", "xgboost"), trials=0, folds=3, progress=False,
                         params={"lightgbm": {"num_leaves": 63, "min_child_samples": 2, "learning_rate": 0.3},
                                 "xgboost": {"max_depth": 8, "min_child_weight": 0.1, "learning_rate": 0.3}})
    result = fit_ensemble(frame, tmp_path / "bundle", "synthetic_v1", options, say=lambda _: None)
    ref = reference_frame(result)
    train = ref[ref["part"] == "train"]
    assert len(train) == len(result.split.train) and len(ref) == len(result.split.train) + len(result.split.test)
    assert list(train["lead_id"]) == list(result.split.train["lead_id"])
    # deep trees scored on their own training rows look better than they are; the reference's scores rank the
    # rows as well as the cross-validation said, no better
    in_sample = roc_auc_score(train["label"], result.ensemble.score(result.split.train)["score"])
    reference = roc_auc_score(train["label"], train["score"])
    assert reference == pytest.approx(result.cv_metrics["ensemble"]["roc_auc"], abs=0.01)
    assert in_sample > reference + 0.03, (in_sample, reference)
    test = ref[ref["part"] == "test"]
    assert np.allclose(test["score"], result.test_scores["score"])
    summary = summarize(ref, result.schema)
    text = json.dumps(summary)
    assert not any(lead in text for lead in ref["lead_id"].head(50))  # aggregates only
    assert set(summary["features"]) == set(result.schema.features) and summary["rows"] == len(ref)
    assert summary["features"]["channel"]["type"] == "categorical"
    assert sum(summary["features"]["channel"]["levels"].values()) + summary["features"]["channel"]["other"] == \
        int(ref["channel"].notna().sum())


def test_a_large_reference_is_a_uniform_sample(tmp_path: Path) -> None:
    from models.fit import FitOptions, fit_ensemble
    from monitoring.reference import reference_frame

    frame = synthetic(2000)
    result = fit_ensemble(frame, tmp_path / "bundle", "synthetic_v1",
                          FitOptions(members=("linear",), trials=0, folds=3, progress=False), say=lambda _: None)
    ref = reference_frame(result, max_rows=500)
    assert len(ref) == 500 and ref["lead_id"].is_unique
    assert 0.7 < (ref["part"] == "train").mean() < 0.9  # train and test in proportion (80/20 split)
