"""Drift report speed and memory: `leadscore monitor drift`'s computation beside a bare numpy floor, same run.

Synthetic served rows and a reference shaped like a lead-scoring feature service (seeded; by default 1,000,000
served rows against 200,000 reference rows, 10 continuous numbers, 4 small integers, 11 categories of 3-40 levels,
and the score; half the continuous features shifted). Each measurement runs in its own forked process, which
generates the arrays and reports its time and peak memory (ru_maxrss):
- floor: every column's score by bare numpy on the same arrays (Wasserstein by sorting both sides and integrating
  the CDF difference, Jensen-Shannon from value counts), no pandas, no Evidently;
- ours: monitoring.drift.compute_drift (Evidently's default method per column, on every row) plus the Evidently
  report (DataDriftPreset + ValueDrift on the score) on a sample of each side, rendered to HTML;
- evidently (with --evidently-rows N): Evidently's own DataDriftPreset on N served rows against N/5 reference rows,
  profiled: the share of its time in the per-column drift calls (and how many there are per column) and in plotly.
The scores of `ours` and `floor` must agree (printed: the largest difference).
Usage:
    python bench/monitoring.py [--served 1000000] [--reference 200000] [--evidently-rows 100000]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

NUMERIC, INTEGERS, CATEGORIES = 10, 4, 11


def frames(served: int, reference: int, seed: int = 5) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, str]]:
    """(reference, current, kinds): half the continuous features shifted in the current rows."""
    rng = np.random.default_rng(seed)

    def make(n: int, shift: float) -> pd.DataFrame:
        cols: dict[str, np.ndarray] = {}
        for i in range(NUMERIC):
            values = rng.lognormal(2.0 + (shift if i % 2 else 0.0), 0.7, n)
            values[rng.random(n) < 0.03] = np.nan
            cols[f"num_{i}"] = values
        for i in range(INTEGERS):
            cols[f"int_{i}"] = rng.integers(0, 3 + i, n).astype("float64")
        for i in range(CATEGORIES):
            levels = np.array([f"level_{j}" for j in range(3 + 4 * i)], dtype=object)
            cols[f"cat_{i}"] = pd.Categorical(levels[rng.integers(0, len(levels), n)])
        cols["score"] = 1 / (1 + np.exp(-rng.normal(-0.5 + shift, 1.2, n)))
        return pd.DataFrame(cols)

    kinds = {f"num_{i}": "numeric" for i in range(NUMERIC)} | {f"int_{i}": "numeric" for i in range(INTEGERS)}
    kinds |= {f"cat_{i}": "categorical" for i in range(CATEGORIES)}
    return make(reference, 0.0), make(served, 0.15), kinds


def floor_scores(ref: pd.DataFrame, cur: pd.DataFrame, kinds: dict[str, str]) -> dict[str, float]:
    """Bare numpy: the same per-column scores, written directly."""
    out = {}
    for name in [*kinds, "score"]:
        if kinds.get(name) == "categorical":
            a, b = ref[name].cat.codes.to_numpy(), cur[name].cat.codes.to_numpy()
            a, b = a[a >= 0], b[b >= 0]
            k = max(a.max(), b.max()) + 1
            p, q = np.bincount(a, minlength=k) / len(a), np.bincount(b, minlength=k) / len(b)
            out[name] = _js(p, q)
            continue
        a, b = ref[name].to_numpy(), cur[name].to_numpy()
        a, b = np.sort(a[np.isfinite(a)]), np.sort(b[np.isfinite(b)])
        values = np.union1d(a[np.r_[True, a[1:] != a[:-1]]], b[np.r_[True, b[1:] != b[:-1]]])
        if len(values) <= 5:  # few distinct values: Jensen-Shannon over them
            p = np.searchsorted(a, values, "right") - np.searchsorted(a, values, "left")
            q = np.searchsorted(b, values, "right") - np.searchsorted(b, values, "left")
            out[name] = _js(p / len(a), q / len(b))
            continue
        allv = np.concatenate([a, b])
        allv.sort(kind="mergesort")
        deltas = np.diff(allv)
        cdf_a = np.searchsorted(a, allv[:-1], "right") / len(a)
        cdf_b = np.searchsorted(b, allv[:-1], "right") / len(b)
        out[name] = float(np.sum(np.abs(cdf_a - cdf_b) * deltas) / max(float(np.std(a)), 0.001))
    return out


def _js(p: np.ndarray, q: np.ndarray) -> float:
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(x: np.ndarray) -> float:
        keep = x > 0
        return float(np.sum(x[keep] * np.log(x[keep] / m[keep])))
    return float(np.sqrt(max(0.0, (kl(p) + kl(q)) / 2)))


def _measure(kind: str, served: int, reference: int, rows: int, out: mp.Queue) -> None:
    warnings.simplefilter("ignore")
    ref, cur, kinds = frames(served, reference)
    if kind == "ours":  # import before the clock: a command imports once; the floor imports nothing either
        from monitoring.drift import compute_drift, evidently_snapshot
        from monitoring.publish import quiet_evidently

        quiet_evidently()
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    parts: dict[str, float] = {}
    if kind == "floor":
        scores = floor_scores(ref, cur, kinds)
    elif kind == "ours":
        result = compute_drift(ref, cur, kinds)
        parts["scores"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        snap = evidently_snapshot(ref, cur, kinds, result, rows)
        with tempfile.TemporaryDirectory() as tmp:
            snap.save_html(str(Path(tmp) / "drift.html"))
        parts["evidently_sample"] = time.perf_counter() - t1
        scores = {c.column: c.score for c in result.columns} | {"score": result.prediction.score}
    else:
        scores = _evidently_full(ref, cur, kinds, parts)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out.put({"seconds": seconds, "peak_gib": peak / 2**20, "data_gib": base / 2**20, "scores": scores,
             "parts": parts})


def _evidently_full(ref: pd.DataFrame, cur: pd.DataFrame, kinds: dict[str, str], parts: dict) -> dict[str, float]:
    """Evidently's DataDriftPreset on everything, profiled."""
    import cProfile
    import pstats

    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    numerical = [c for c, k in kinds.items() if k != "categorical"] + ["score"]
    definition = DataDefinition(numerical_columns=numerical,
                                categorical_columns=[c for c, k in kinds.items() if k == "categorical"])
    profile = cProfile.Profile()
    profile.enable()
    snap = Report([DataDriftPreset()]).run(Dataset.from_pandas(cur, data_definition=definition),
                                           Dataset.from_pandas(ref, data_definition=definition))
    profile.disable()
    stats = pstats.Stats(profile).stats  # (file, line, name) -> (cc, nc, tt, ct, callers)
    total = sum(v[2] for v in stats.values())
    drift_calls = sum(v[1] for k, v in stats.items() if k[2] == "get_one_column_drift")
    parts["column_drift_calls_per_column"] = drift_calls / (len(kinds) + 1)
    parts["share_in_column_drift"] = sum(v[3] for k, v in stats.items() if k[2] == "get_one_column_drift") / total
    parts["share_in_plotly"] = sum(v[2] for k, v in stats.items() if "plotly" in k[0]) / total
    return {m["config"]["column"]: m["value"] for m in snap.dict()["metrics"]
            if m["config"]["type"].endswith("ValueDrift")}


def measure(kind: str, served: int, reference: int, rows: int = 20_000) -> dict:
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    proc = ctx.Process(target=_measure, args=(kind, served, reference, rows, out))
    proc.start()
    got = out.get()
    proc.join()
    return got


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--served", type=int, default=1_000_000)
    parser.add_argument("--reference", type=int, default=200_000)
    parser.add_argument("--report-rows", type=int, default=10_000, help="rows per side in the Evidently report")
    parser.add_argument("--evidently-rows", type=int, default=100_000, help="0: skip Evidently on all rows")
    args = parser.parse_args()
    columns = NUMERIC + INTEGERS + CATEGORIES
    print(f"drift of {args.served:,} served rows x {columns} features + score against {args.reference:,} reference "
          f"rows (2 cores; each measurement in its own process)")
    floor = measure("floor", args.served, args.reference)
    ours = measure("ours", args.served, args.reference, args.report_rows)
    worst = max(abs(ours["scores"][k] - floor["scores"][k]) for k in floor["scores"])
    print(f"floor (bare numpy scores)      {floor['seconds']:7.2f} s   peak {floor['peak_gib']:.2f} GiB "
          f"(data {floor['data_gib']:.2f})")
    print(f"ours (scores + report)         {ours['seconds']:7.2f} s   peak {ours['peak_gib']:.2f} GiB   "
          f"{ours['seconds'] / floor['seconds']:.2f}x the floor (aim <= 3x, < 60 s, < 4 GiB)")
    print(f"  whole-column scores          {ours['parts']['scores']:7.2f} s   "
          f"{ours['parts']['scores'] / floor['seconds']:.2f}x the floor; largest score difference {worst:.2e}")
    print(f"  Evidently report, {args.report_rows:,} rows per side, HTML  {ours['parts']['evidently_sample']:7.2f} s")
    if args.evidently_rows:
        n = args.evidently_rows
        ev = measure("evidently", n, max(1001, n // 5))
        small = measure("floor", n, max(1001, n // 5))
        p = ev["parts"]
        print(f"Evidently alone on {n:,} served x {max(1001, n // 5):,} reference rows: {ev['seconds']:.2f} s, peak "
              f"{ev['peak_gib']:.2f} GiB, {ev['seconds'] / small['seconds']:.1f}x the floor on the same rows "
              f"({small['seconds']:.2f} s); per-column drift computed {p['column_drift_calls_per_column']:.0f} times "
              f"per column ({p['share_in_column_drift']:.0%} of its time), {p['share_in_plotly']:.0%} in plotly")


if __name__ == "__main__":
    main()
