"""Model quality on the shared datasets: every member, the ensemble and two untuned baselines on the same split.

    python bench/quality.py [--datasets xeducation,health_insurance,olist] [--trials 100] [--budget S]
                            [--bootstrap 1000] [--out FILE.json]

No servers: each dataset's frame is parsed straight from its CSV with its spec by the checks ingest uses
(models/data.py), so the features are those `leadscore ingest crm` stores and `leadscore train` reads from Feast.
The split is the product's own (`models.split.split_frame`, as `leadscore train` makes it: by time where the rows'
times differ, as Olist's first-contact dates do, else stratified by a hash of the lead id). On the training rows:
the ensemble exactly as `leadscore train` fits it (tuned within its budget, cross-fitted, stacked, calibrated), and
two untuned baselines fitted on the same rows: scikit-learn's LogisticRegression (one-hot categoricals, median
imputation with missing flags, scaling) and LightGBM's LGBMClassifier with its defaults (native categoricals). On
the test rows: ROC AUC, PR AUC, log loss, calibration error and precision in the top decile of each, and a paired
bootstrap interval of the ensemble's ROC AUC gain over the better baseline (the same resampled leads for both).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from models.data import frame_from_file  # noqa: E402
from models.evaluate import metrics  # noqa: E402
from models.fit import FitOptions, feature_columns, fit_ensemble  # noqa: E402
from models.preprocess import fit_schema, infer_categorical, tree_frame  # noqa: E402
from models.split import split_frame  # noqa: E402
from pipelines.spec import load_spec  # noqa: E402

DATA = REPO.parent / "shared" / "data"
FILES = {"xeducation": "xeducation_Leads.csv", "health_insurance": "health_insurance_cross_sell_30pct_subset.csv",
         "olist": "olist_marketing_qualified_leads.csv"}
SHOWN = ("roc_auc", "pr_auc", "log_loss", "ece", "precision_at_10")
AIM_GAIN, AIM_ECE, AIM_MINUTES = 0.005, 0.02, 30


def logistic_baseline(train: pd.DataFrame, test: pd.DataFrame) -> np.ndarray:
    """Untuned: one-hot categoricals, median-imputed scaled numerics (with missing flags), LogisticRegression()."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    features = feature_columns(train)
    cats = infer_categorical(train, features)
    nums = [f for f in features if f not in cats]

    def prep(df: pd.DataFrame) -> pd.DataFrame:
        out = df[features].copy()
        for c in cats:
            out[c] = out[c].astype(object).where(out[c].notna(), "(missing)").astype(str)
        for c in nums:
            out[c] = pd.to_numeric(out[c].map(lambda v: float(v) if isinstance(v, bool) else v), errors="coerce")
        return out

    steps = [("cat", OneHotEncoder(handle_unknown="ignore"), cats)]
    if nums:
        steps.append(("num", make_pipeline(SimpleImputer(strategy="median", add_indicator=True), StandardScaler()),
                      nums))
    model = make_pipeline(ColumnTransformer(steps), LogisticRegression(max_iter=5000))
    model.fit(prep(train), train["label"])
    return model.predict_proba(prep(test))[:, 1]


def lightgbm_baseline(train: pd.DataFrame, test: pd.DataFrame) -> np.ndarray:
    """Untuned: LGBMClassifier() with its defaults on the same columns (categoricals as pandas categories)."""
    import lightgbm as lgb

    schema = fit_schema(train, feature_columns(train))
    model = lgb.LGBMClassifier(verbosity=-1, random_state=0, n_jobs=os.cpu_count() or 2)
    model.fit(tree_frame(train, schema), train["label"])
    return model.predict_proba(tree_frame(test, schema))[:, 1]


def paired_bootstrap(y: np.ndarray, a: np.ndarray, b: np.ndarray, n: int, seed: int = 0) -> tuple[float, float]:
    """95 % interval of ROC AUC(a) - ROC AUC(b) over test sets resampled with replacement (the same rows for both)."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    gains = []
    while len(gains) < n:
        idx = rng.integers(0, len(y), len(y))
        if y[idx].min() == y[idx].max():
            continue
        gains.append(roc_auc_score(y[idx], a[idx]) - roc_auc_score(y[idx], b[idx]))
    low, high = np.quantile(gains, [0.025, 0.975])
    return float(low), float(high)


def ece_floor(p: np.ndarray, sims: int = 500, seed: int = 0) -> tuple[float, float]:
    """The calibration error a perfectly calibrated model with these scores shows on this many rows (labels drawn
    as Bernoulli(score)): its mean and 95th percentile over `sims` draws. An ECE near it is noise, not
    miscalibration."""
    from models.evaluate import expected_calibration_error

    rng = np.random.default_rng(seed)
    draws = [expected_calibration_error((rng.random(len(p)) < p).astype(int), p) for _ in range(sims)]
    return float(np.mean(draws)), float(np.quantile(draws, 0.95))


def run_dataset(name: str, options: FitOptions, bootstrap: int) -> dict:
    t0 = time.monotonic()
    spec = load_spec(REPO / "feature_repo" / "datasets" / f"{name}.yaml")
    frame = frame_from_file(DATA / FILES[name], spec)
    split = split_frame(frame)
    with tempfile.TemporaryDirectory() as tmp:
        result = fit_ensemble(frame, Path(tmp), f"{name}_v{spec.version}", options, split=split)
    fit_seconds = time.monotonic() - t0
    y = split.test["label"].to_numpy("int64")
    scores = {"ensemble": result.test_scores["score"].to_numpy()}
    scores |= {m: result.test_scores[f"p_{m}"].to_numpy() for m in result.fitted}
    t1 = time.monotonic()
    baselines = {"untuned_logistic": logistic_baseline(split.train, split.test),
                 "untuned_lightgbm": lightgbm_baseline(split.train, split.test)}
    baseline_seconds = time.monotonic() - t1
    table = {m: {k: metrics(y, p)[k] for k in SHOWN} for m, p in {**scores, **baselines}.items()}
    best = max(baselines, key=lambda b: table[b]["roc_auc"])
    low, high = paired_bootstrap(y, scores["ensemble"], baselines[best], bootstrap)
    return {"rows": len(frame), "positive_share": float(frame["label"].mean()), "split": split.method,
            "split_detail": split.detail, "train": len(split.train), "test": len(split.test), "metrics": table,
            "weights": result.ensemble.weights, "dropped": result.dropped, "warnings": result.warnings,
            "cv_roc_auc": {m: v["roc_auc"] for m, v in result.cv_metrics.items()},
            "best_baseline": best, "gain": table["ensemble"]["roc_auc"] - table[best]["roc_auc"],
            "gain_interval": [low, high], "fit_seconds": fit_seconds, "phase_seconds": result.seconds,
            "baseline_seconds": baseline_seconds, "ece_floor": ece_floor(scores["ensemble"])}


def report(results: dict, minutes: float) -> bool:
    """Print the tables and the aims; True if every aim is met."""
    for name, r in results.items():
        print(f"\n{name}: {r['rows']} rows ({r['positive_share']:.1%} positive), split {r['split']} "
              f"({r['split_detail']}), train {r['train']}, test {r['test']}; fit {r['fit_seconds']:.0f} s")
        print("| model | " + " | ".join(SHOWN) + " |")
        print("|---|" + "---|" * len(SHOWN))
        for model, m in r["metrics"].items():
            print(f"| {model} | " + " | ".join(f"{m[k]:.4f}" for k in SHOWN) + " |")
        print("weights: " + ", ".join(f"{m} {w:.2f}" for m, w in r["weights"].items())
              + (f"; dropped: {', '.join(r['dropped'])}" if r["dropped"] else "")
              + (f"; warnings: {'; '.join(r['warnings'])}" if r["warnings"] else ""))
        print(f"ensemble - {r['best_baseline']}: ROC AUC {r['gain']:+.4f}, paired bootstrap 95% "
              f"[{r['gain_interval'][0]:+.4f}, {r['gain_interval'][1]:+.4f}]")
        print(f"ensemble calibration error {r['metrics']['ensemble']['ece']:.4f}; a perfectly calibrated model with "
              f"these scores on {r['test']} rows: {r['ece_floor'][0]:.4f} on average, {r['ece_floor'][1]:.4f} at the "
              "95th percentile")
    gains = [r["gain"] for r in results.values()]
    below = [n for n, r in results.items() if r["gain_interval"][1] < 0]
    eces = {n: r["metrics"]["ensemble"]["ece"] for n, r in results.items()}
    checks = {f"mean gain over the best untuned baseline {np.mean(gains):+.4f} >= +{AIM_GAIN}":
              np.mean(gains) >= AIM_GAIN,
              f"below the best baseline beyond noise on: {below or 'none'}": not below,
              "calibration error " + ", ".join(f"{n} {e:.4f}" for n, e in eces.items()) + f" <= {AIM_ECE}":
              max(eces.values()) <= AIM_ECE,
              f"{minutes:.1f} min < {AIM_MINUTES} min": minutes < AIM_MINUTES}
    print()
    for text, ok in checks.items():
        print(f"{'met' if ok else 'MISSED'}: {text}")
    return all(checks.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="xeducation,health_insurance,olist")
    parser.add_argument("--trials", type=int, default=100, help="Optuna trials per member at most (0 = defaults)")
    parser.add_argument("--budget", type=float, default=None, help="tuning seconds for all members (default: "
                        "leadscore train's, by the rows)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples of the test rows")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()
    t0 = time.monotonic()
    options = FitOptions(trials=args.trials, budget=args.budget, progress=False)
    results = {}
    for name in args.datasets.split(","):
        results[name] = run_dataset(name, options, args.bootstrap)
        print(f"{name}: done in {time.monotonic() - t0:.0f} s so far", flush=True)
    minutes = (time.monotonic() - t0) / 60
    ok = report(results, minutes)
    print(f"\n{minutes:.1f} min on {platform.machine()} ({os.cpu_count()} cores), trials={args.trials}, "
          f"budget={args.budget or 'auto'}")
    if args.out:
        args.out.write_text(json.dumps({"results": results, "minutes": minutes, "aims_met": ok, "args": vars(args)},
                                       indent=1, default=str))


if __name__ == "__main__":
    main()
