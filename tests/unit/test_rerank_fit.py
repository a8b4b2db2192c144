"""The re-ranker fitting job's pure parts: the split, the ranking metrics, the neighbours that vote."""

from __future__ import annotations

import numpy as np
import pytest

from serving.rerank_fit import ndcg_at_k, ranking_metrics, split_leads, top_neighbours
from serving.reranker import Blender, SignalParams, vote


def _leads(n: int = 1000, seed: int = 0) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    ids = [f"lead-{i:05d}" for i in range(n)]
    strata = [f"{int(y)}/{int(t)}" for y, t in zip(rng.random(n) < 0.15, rng.random(n) < 0.7, strict=True)]
    return ids, strata


def test_split_is_seeded_complete_and_stratified() -> None:
    ids, strata = _leads()
    a = split_leads(ids, strata, seed=3)
    assert a == split_leads(list(reversed(ids)), list(reversed(strata)), seed=3)  # order of input does not matter
    assert a != split_leads(ids, strata, seed=4)
    assert set(a) == set(ids) and set(a.values()) == {"reference", "fit", "test"}
    for stratum in set(strata):
        members = [i for i, s in zip(ids, strata, strict=True) if s == stratum]
        shares = {r: sum(a[i] == r for i in members) / len(members) for r in ("reference", "fit", "test")}
        assert shares["reference"] == pytest.approx(0.5, abs=0.01)
        assert shares["fit"] == pytest.approx(0.25, abs=0.01)


def test_split_without_reference_halves_the_leads() -> None:
    ids, strata = _leads(400)
    roles = split_leads(ids, strata, seed=1, reference=0.0, fit=0.5)
    assert set(roles.values()) == {"fit", "test"}
    assert sum(r == "fit" for r in roles.values()) == pytest.approx(200, abs=4)


def test_split_rejects_bad_shares_and_duplicates() -> None:
    with pytest.raises(ValueError):
        split_leads(["a", "b"], [0, 1], seed=0, reference=0.8, fit=0.2)
    with pytest.raises(ValueError):
        split_leads(["a", "a"], [0, 1], seed=0)


def test_ndcg_and_ranking_metrics() -> None:
    y = np.array([1, 0, 1, 0, 0, 0])
    assert ndcg_at_k(y, np.array([0.9, 0.1, 0.8, 0.3, 0.2, 0.0])) == pytest.approx(1.0)
    worst = ndcg_at_k(y, -np.array([0.9, 0.1, 0.8, 0.3, 0.2, 0.0]))
    ideal = 1 + 1 / np.log2(3)
    assert worst == pytest.approx((1 / np.log2(6) + 1 / np.log2(7)) / ideal)
    assert ndcg_at_k(np.zeros(5), np.arange(5)) == 0.0
    assert ndcg_at_k(y, np.array([0.9, 0.1, 0.8, 0.3, 0.2, 0.0]), k=1) == pytest.approx(1.0)
    m = ranking_metrics(y, np.array([0.9, 0.1, 0.8, 0.3, 0.2, 0.0]))
    assert m == {"roc_auc": 1.0, "pr_auc": 1.0, "precision_at_10": 1.0, "ndcg_at_100": pytest.approx(1.0)}


def test_top_neighbours_are_the_voters() -> None:
    rows = [("a", 0.9, 1), ("a", 0.5, 1), ("b", 0.8, 0), ("c", 0.7, 1), ("b", 0.95, 0)]
    assert top_neighbours(rows, 2) == ["b", "a"]
    params = SignalParams(k=2, shrink=0.0, prior=0.5)
    assert vote(rows, params) == pytest.approx(0.9 ** 2 / (0.9 ** 2 + 0.95 ** 2))


def test_blender_features_layout_has_three_columns_and_no_text_term_without_text() -> None:
    blender = Blender("1", (1.0, 2.0, 0.5), -0.1, SignalParams(prior=0.3))
    x = blender.features(np.array([0.2, 0.6]), [None, 0.3])
    assert x.shape == (2, 3)
    assert x[0, 1] == 0.0 and x[0, 2] == 0.0 and x[1, 1] == pytest.approx(0.0) and x[1, 2] == 1.0
