"""Per-column drift scores exactly as Evidently 0.7 computes them by default, on whole columns and fast.

Evidently's `DataDriftPreset` picks a method per column from the reference size, the column type and the number of
distinct values (`evidently.legacy.calculations.stattests.registry._get_default_stattest`), drops missing and
infinite values, and calls one scipy function. Over a million rows most of its time goes elsewhere (per-column
correlation matrices, histograms and plots for the HTML), so the monitor computes the scores that decide and alert
here, on every row, with the same rules and the same scipy calls; Evidently then renders a report on a sample with
each column's method fixed to the one chosen here (monitoring/drift.py). tests/unit/test_stattests.py checks that
both give the same method, score and verdict.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

SMALL_REFERENCE = 1000  # at most this many reference values: statistical tests (p-values); above: distances
# Evidently's names and display names, and each method's default threshold; `pvalue` methods drift below it
METHODS = {
    "wasserstein": ("Wasserstein distance (normed)", 0.1, False),
    "jensenshannon": ("Jensen-Shannon distance", 0.1, False),
    "ks": ("K-S p_value", 0.05, True),
    "chisquare": ("chi-square p_value", 0.05, True),
    "z": ("Z-test p_value", 0.05, True),
}


@dataclass(frozen=True)
class ColumnDrift:
    """One column's drift: Evidently's method, its score (a distance, or a p-value for tests) and the verdict."""

    column: str
    kind: str  # numerical | categorical
    method: str
    score: float
    threshold: float
    drifted: bool
    reference_rows: int  # values compared (missing and infinite values left out, as Evidently does)
    current_rows: int

    @property
    def display_name(self) -> str:
        return METHODS[self.method][0]

    def as_dict(self) -> dict:
        return asdict(self) | {"method_name": self.display_name}


def clean(values: pd.Series | np.ndarray, kind: str) -> pd.Series | np.ndarray:
    """A column without missing values: numbers as a sorted float64 array (infinities left out too), categories
    as a Series."""
    if kind == "numerical":
        arr = values.to_numpy("float64", na_value=np.nan) if isinstance(values, pd.Series) else \
            np.asarray(values, "float64")
        arr = arr[np.isfinite(arr)]
        arr.sort()
        return arr
    col = values if isinstance(values, pd.Series) else pd.Series(values)
    return col.dropna()


def _counts(col: pd.Series | np.ndarray) -> pd.Series:
    """Each distinct value's count (no zero counts); a sorted numeric array is counted in one pass."""
    if isinstance(col, np.ndarray):
        starts = np.flatnonzero(np.r_[True, col[1:] != col[:-1]]) if len(col) else np.zeros(0, "int64")
        return pd.Series(np.diff(np.r_[starts, len(col)]), index=col[starts])
    counts = col.value_counts(sort=False)
    return counts[counts > 0]


def choose_method(reference: pd.Series | np.ndarray, current: pd.Series | np.ndarray, kind: str,
                  n_values: int | None = None) -> str:
    """Evidently's default method for two cleaned columns."""
    if n_values is None:
        n_values = len(_counts(reference).index.union(_counts(current).index))
    if len(reference) <= SMALL_REFERENCE:
        if kind == "numerical" and n_values > 5:
            return "ks"
        return "chisquare" if n_values > 2 else "z"
    if kind == "numerical" and n_values > 5:
        return "wasserstein"
    return "jensenshannon"


def _aligned(ref: pd.Series, cur: pd.Series) -> tuple[np.ndarray, np.ndarray, pd.Index]:
    keys = ref.index.union(cur.index)
    return (ref.reindex(keys, fill_value=0).to_numpy("float64"), cur.reindex(keys, fill_value=0).to_numpy("float64"),
            keys)


def _sorted(values: pd.Series | np.ndarray) -> np.ndarray:
    arr = np.asarray(values, "float64")
    return arr if len(arr) < 2 or bool(np.all(arr[1:] >= arr[:-1])) else np.sort(arr)


def _wasserstein(u: np.ndarray, v: np.ndarray) -> float:
    """scipy.stats.wasserstein_distance of two sorted arrays (its CDF formula, without sorting them again)."""
    values = np.concatenate([u, v])
    values.sort(kind="mergesort")
    deltas = np.diff(values)
    cdf_u = np.searchsorted(u, values[:-1], "right") / len(u)
    cdf_v = np.searchsorted(v, values[:-1], "right") / len(v)
    return float(np.sum(np.abs(cdf_u - cdf_v) * deltas))


def score(reference: pd.Series | np.ndarray, current: pd.Series | np.ndarray, method: str,
          counts: tuple[pd.Series, pd.Series] | None = None) -> float:
    """The method's score of two cleaned columns, by Evidently's formula."""
    from scipy import stats
    from scipy.spatial import distance

    if method == "wasserstein":
        ref, cur = _sorted(reference), _sorted(current)
        return _wasserstein(ref, cur) / max(float(np.std(ref)), 0.001)
    if method == "ks":
        return float(stats.ks_2samp(np.asarray(reference, "float64"), np.asarray(current, "float64"))[1])
    ref_counts, cur_counts = counts or (_counts(reference), _counts(current))
    ref, cur, keys = _aligned(ref_counts, cur_counts)
    if method == "jensenshannon":
        return float(distance.jensenshannon(ref / len(reference), cur / len(current)))
    if method == "chisquare":
        with np.errstate(divide="ignore"):  # a value the reference never had: p = 0, as in Evidently
            return float(stats.chisquare(cur, ref * (len(current) / len(reference)))[1])
    if method == "z":
        if len(keys) == 1:
            return 1.0
        first = min(range(len(keys)), key=lambda i: keys[i])  # Evidently: the smallest value is the "0" class
        p1, p2 = 1.0 - ref[first] / len(reference), 1.0 - cur[first] / len(current)
        n1, n2 = len(reference), len(current)
        pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
        z = (p1 - p2) / np.sqrt(pooled * (1 - pooled) * (1.0 / n1 + 1.0 / n2))
        return float(2 * (1 - stats.norm.cdf(np.abs(z))))
    raise ValueError(f"unknown drift method {method!r}: use one of {', '.join(METHODS)}")


def column_drift(name: str, reference: pd.Series | np.ndarray, current: pd.Series | np.ndarray, kind: str,
                 method: str | None = None, threshold: float | None = None) -> ColumnDrift | None:
    """Drift of one column (None when either side has no value to compare)."""
    if method is not None and method not in METHODS:
        raise ValueError(f"unknown drift method {method!r}: use one of {', '.join(METHODS)}")
    ref, cur = clean(reference, kind), clean(current, kind)
    if len(ref) == 0 or len(cur) == 0:
        return None
    counts = (_counts(ref), _counts(cur))
    n_values = len(counts[0].index.union(counts[1].index))
    method = method or choose_method(ref, cur, kind, n_values)
    threshold = METHODS[method][1] if threshold is None else threshold
    value = score(ref, cur, method, counts)
    drifted = value < threshold if METHODS[method][2] else value >= threshold
    if method == "ks":
        drifted = value <= threshold  # Evidently's K-S verdict is inclusive
    return ColumnDrift(name, kind, method, value, threshold, bool(drifted), len(ref), len(cur))
