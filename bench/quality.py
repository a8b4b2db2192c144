"""Cross-validated ROC AUC of each member, the ensemble and a logistic-regression baseline on the shared datasets.

    python bench/quality.py [--folds 5] [--trials 0] [--datasets xeducation,health_insurance] [--out FILE.json]

No servers: each dataset's frame is parsed straight from its CSV with its spec by the checks ingest uses
(models/data.py -> pipelines/validate.py), so the features are those `leadscore ingest crm` stores and
`leadscore train` reads from Feast (both files have one timestamp for every row, so no point-in-time join is lost).
Per fold: the fold is the test set; the other folds are split (stratified, deterministic) into 75 % train and
25 % validation for early stopping, tuning, the stacker and calibration, exactly as `leadscore train` does; the
baseline (one-hot + median imputation + scaling + LogisticRegression) is fitted on all the other folds.
"""

from __future__ import annotations

import argparse
import json
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
from models.fit import FitOptions, feature_columns, fit_ensemble  # noqa: E402
from models.preprocess import infer_categorical  # noqa: E402
from models.split import Split, split_frame  # noqa: E402
from pipelines.spec import load_spec  # noqa: E402

DATA = REPO.parent / "shared" / "data"
COLUMNS = ("xgboost", "lightgbm", "mlp", "ensemble", "logistic_regression")
FILES = {"xeducation": "xeducation_Leads.csv", "health_insurance": "health_insurance_cross_sell_30pct_subset.csv"}


def baseline_auc(train: pd.DataFrame, test: pd.DataFrame) -> float:
    """One-hot categoricals, median-imputed scaled numerics (with missing flags), plain logistic regression."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
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

    model = make_pipeline(
        ColumnTransformer([("cat", OneHotEncoder(handle_unknown="ignore", min_frequency=5), cats),
                           ("num", make_pipeline(SimpleImputer(strategy="median", add_indicator=True),
                                                 StandardScaler()), nums)]),
        LogisticRegression(max_iter=3000))
    model.fit(prep(train), train["label"])
    return float(roc_auc_score(test["label"], model.predict_proba(prep(test))[:, 1]))


def folds(frame: pd.DataFrame, k: int, seed: int = 0) -> list[np.ndarray]:
    from sklearn.model_selection import StratifiedKFold

    return [test for _, test in StratifiedKFold(k, shuffle=True, random_state=seed).split(frame, frame["label"])]


def run_dataset(name: str, k: int, trials: int, timeout: float) -> dict:
    frame = frame_from_file(DATA / FILES[name], load_spec(REPO / "feature_repo" / "datasets" / f"{name}.yaml"))
    scores: dict[str, list[float]] = {}
    seconds = []
    for i, test_idx in enumerate(folds(frame, k)):
        t0 = time.monotonic()
        test = frame.iloc[test_idx]
        rest = frame.drop(index=frame.index[test_idx])
        inner = split_frame(rest, valid=0.25, test=0.01)  # inner train / validation; its tiny test part is unused
        split = Split(pd.concat([inner.train, inner.test]), inner.valid, test, "cv")
        with tempfile.TemporaryDirectory() as tmp:
            result = fit_ensemble(frame, Path(tmp), name, FitOptions(trials=trials, timeout=timeout, progress=False),
                                  split=split)
        for member, m in result.test_metrics.items():
            scores.setdefault(member, []).append(m["roc_auc"])
        scores.setdefault("logistic_regression", []).append(baseline_auc(rest, test))
        seconds.append(time.monotonic() - t0)
        print(f"{name} fold {i + 1}/{k}: " + ", ".join(f"{m} {v[-1]:.4f}" for m, v in scores.items())
              + f" ({seconds[-1]:.0f} s)", flush=True)
    return {"rows": len(frame), "positive_share": float(frame["label"].mean()), "folds": k, "trials": trials,
            "roc_auc": {m: {"mean": float(np.mean(v)), "std": float(np.std(v)), "folds": v} for m, v in scores.items()},
            "seconds_per_fold": float(np.mean(seconds))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--trials", type=int, default=0, help="Optuna trials per member and fold (0 = defaults)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds of tuning per member and fold")
    parser.add_argument("--datasets", default="xeducation,health_insurance")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()
    t0 = time.monotonic()
    results = {name: run_dataset(name, args.folds, args.trials, args.timeout) for name in args.datasets.split(",")}
    print("\n| dataset | rows | " + " | ".join(COLUMNS) + " |")
    print("|---|---|" + "---|" * len(COLUMNS))
    for name, r in results.items():
        cells = [f"{r['roc_auc'][m]['mean']:.4f} ± {r['roc_auc'][m]['std']:.4f}"
                 for m in COLUMNS]
        print(f"| {name} | {r['rows']} | " + " | ".join(cells) + " |")
    total = time.monotonic() - t0
    print(f"\n{args.folds}-fold CV, trials={args.trials}, {total / 60:.1f} min on {platform.machine()} "
          f"({__import__('os').cpu_count()} cores)")
    if args.out:
        args.out.write_text(json.dumps({"results": results, "minutes": total / 60, "args": vars(args)}, indent=1,
                                       default=str))


if __name__ == "__main__":
    main()
