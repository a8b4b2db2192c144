"""Time and peak memory of training the ensemble without tuning on N synthetic broker leads (default 1M).

    python bench/train_scale.py [--rows 1000000] [--out FILE.json]

The leads have lead_scoring_v1's shape (demographics with text categories, 30 windowed engagement counts, reply
latency and the on-demand ratios, ~45 features, some missing) and a label from a known logistic model with
interactions, ~12 % positive. Measured in one process, no servers: the Great Expectations suite, then
`fit_ensemble` with `--trials 0` (what `leadscore train --trials 0` runs between the Feast read and MLflow), then
scoring every row through the loaded bundle. Peak memory is the process's max RSS (getrusage).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from models.fit import FitOptions, fit_ensemble  # noqa: E402
from models.validate import rules_for, validate_training_set  # noqa: E402

FAMILIES = ("listing_views", "sessions", "time_on_site_s", "emails_sent", "emails_opened", "emails_clicked",
            "whatsapp_in", "whatsapp_out", "calls", "form_submissions")


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def synthetic_leads(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    cities = np.array([f"city_{i:02d}" for i in range(60)])
    frame = pd.DataFrame({
        "lead_id": np.char.add("BL-", np.arange(n).astype(str)),
        "event_timestamp": pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 90 * 86400, n), "s"),
        "age_band": rng.choice(["18-24", "25-34", "35-44", "45-54", "55+"], n, p=[.1, .35, .3, .15, .1]),
        "annual_income_inr": np.round(rng.lognormal(13.5, 0.7, n), -3),
        "employment_type": rng.choice(["salaried", "self_employed", "business", "retired", "student", "other"], n),
        "cibil_score": np.where(rng.random(n) < 0.15, np.nan, rng.integers(300, 901, n).astype(float)),
        "city": cities[rng.zipf(1.6, n) % 60],
        "city_tier": rng.integers(1, 4, n).astype(float),
        "household_size": rng.integers(1, 9, n).astype(float),
        "profession": rng.choice([f"profession_{i}" for i in range(25)], n),
    })
    frame["cibil_band"] = pd.cut(frame["cibil_score"], [0, 549, 649, 699, 749, 900],
                                 labels=["poor", "fair", "good", "very_good", "excellent"]).astype(object)
    intent = rng.gamma(1.0, 1.0, n)  # a hidden propensity drives every engagement count
    for family in FAMILIES:
        base = rng.poisson(intent * (300.0 if family == "time_on_site_s" else 2.0))
        for window, share in (("1d", 0.1), ("7d", 0.4), ("30d", 1.0)):
            frame[f"{family}_{window}"] = rng.binomial(base, share).astype(float)
    frame["whatsapp_reply_latency_s_30d"] = np.where(frame["whatsapp_in_30d"] > 0, rng.exponential(3600, n), np.nan)
    frame["email_open_rate_30d"] = frame["emails_opened_30d"] / frame["emails_sent_30d"].replace(0, np.nan)
    frame["email_click_through_rate_30d"] = frame["emails_clicked_30d"] / frame["emails_opened_30d"].replace(0, np.nan)
    frame["engagement_velocity"] = frame["listing_views_7d"] / frame["listing_views_30d"].replace(0, np.nan) * 30 / 7
    frame["days_since_first_touch"] = rng.uniform(0, 90, n)
    frame["hours_since_last_event"] = rng.exponential(48, n)
    z = (-3.2 + 0.8 * np.log1p(frame["listing_views_30d"]) + 0.6 * (frame["form_submissions_30d"] > 0)
         + 0.5 * np.log1p(frame["calls_30d"]) - 0.01 * frame["hours_since_last_event"]
         + 0.4 * (frame["age_band"] == "35-44") + 0.3 * np.log(frame["annual_income_inr"] / 7e5)
         + 0.5 * (frame["employment_type"] == "salaried") * (frame["cibil_score"].fillna(600) > 700)
         + 0.3 * (frame["city_tier"] == 1))
    frame["label"] = (rng.random(n) < 1 / (1 + np.exp(-z))).astype("int64")
    return frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    steps: dict[str, float] = {}
    t0 = time.monotonic()
    frame = synthetic_leads(args.rows)
    steps["generate"] = time.monotonic() - t0
    print(f"{len(frame)} leads, {len(frame.columns) - 3} features, {frame['label'].mean():.1%} positive "
          f"({steps['generate']:.0f} s, peak {peak_gib():.2f} GiB)", flush=True)
    t1 = time.monotonic()
    report = validate_training_set(frame, rules_for(frame, []))
    steps["validate"] = time.monotonic() - t1
    print(f"{report.summary()} ({steps['validate']:.0f} s, peak {peak_gib():.2f} GiB)", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        t2 = time.monotonic()
        result = fit_ensemble(frame, Path(tmp), "lead_scoring_v1", FitOptions(trials=0), say=print)
        steps["fit"] = time.monotonic() - t2
        t3 = time.monotonic()
        scored = result.ensemble.score(frame)
        steps["score_all"] = time.monotonic() - t3
    total = time.monotonic() - t0
    m = result.test_metrics
    print(f"fit {steps['fit']:.0f} s ({', '.join(f'{k} {v:.0f} s' for k, v in result.seconds.items())}); "
          f"scored {len(scored)} rows in {steps['score_all']:.0f} s; test ROC AUC "
          + ", ".join(f"{k} {v['roc_auc']:.4f}" for k, v in m.items()))
    print(f"TOTAL {total / 60:.1f} min, peak RSS {peak_gib():.2f} GiB ({os.cpu_count()} cores)")
    if args.out:
        args.out.write_text(json.dumps({"rows": args.rows, "steps_s": steps, "member_s": result.seconds,
                                        "total_min": total / 60, "peak_rss_gib": peak_gib(),
                                        "test_roc_auc": {k: v["roc_auc"] for k, v in m.items()}}, indent=1))


if __name__ == "__main__":
    main()
