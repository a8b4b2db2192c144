"""One full monitor cycle (drift of the last day + realized quality of 30 days of cohorts, no retrain) over a
simulated 30-day history of 100,000 scored leads, beside a bare read of the same rows, in the same run.

A private stack on free ports (`leadscore infra up` in a temporary state directory, removed at the end). A model is
trained on 20,000 synthetic historical leads (12 features: numbers, categories, a flag) and promoted; then
`--leads` leads arrive evenly over `--days` days, each scored once by that model in this process and written to
`serving.prediction_log` with its features, as the service writes them; converted leads get their label 1-20 days
after the score (some arrive after "now": pending), lost ones a 0. The cycle is `monitoring.loop.cycle` as
`leadscore monitor run` runs it (reports, MLflow runs and Evidently UI snapshots included), with the retrain
triggers out of reach. The floor: COPY of the same window's, cohort's and reference's rows out of PostgreSQL as CSV,
unparsed.
Usage:
    python bench/monitor_cycle.py [--leads 100000] [--days 30]
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
import time
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from infra.config import Settings  # noqa: E402
from tests.conftest import stack_env  # noqa: E402

LEADSCORE = Path(sys.executable).parent / "leadscore"
MODEL, DATASET = "bench-cycle", "bench_cycle"
CITIES = np.array(["Pune", "Delhi", "Mumbai", "Jaipur", "Surat", "Kochi"], dtype=object)
SOURCES = np.array(["web", "referral", "portal", "walk-in", "ads"], dtype=object)


def leads_frame(n: int, rng: np.random.Generator) -> tuple[pd.DataFrame, np.ndarray]:
    """n synthetic leads (features) and their conversion probability."""
    frame = pd.DataFrame({
        "income_lakh": rng.lognormal(2.2, 0.6, n), "visits_7d": rng.poisson(3, n).astype("float64"),
        "time_on_site_s": rng.gamma(2.0, 300.0, n), "emi_uses": rng.poisson(0.7, n).astype("float64"),
        "cibil": rng.normal(720, 60, n).round(), "age": rng.integers(21, 65, n).astype("float64"),
        "household": rng.integers(1, 7, n).astype("float64"), "reply_minutes": rng.exponential(90, n),
        "city": CITIES[rng.integers(0, len(CITIES), n)], "source": SOURCES[rng.integers(0, len(SOURCES), n)],
        "product": np.where(rng.random(n) < 0.2, "insurance", "property").astype(object),
        "has_whatsapp": (rng.random(n) < 0.8).astype("float64"),
    })
    z = (-2.0 + 0.35 * np.log1p(frame["visits_7d"]) * 2 + 0.0012 * frame["time_on_site_s"] + 0.5 * frame["emi_uses"]
         + (frame["cibil"] - 720) / 80 - 0.004 * frame["reply_minutes"] + 0.4 * (frame["source"] == "referral"))
    return frame, 1 / (1 + np.exp(-z.to_numpy()))


def setup(settings: Settings, leads: int, days: int, now: datetime, seed: int = 3) -> tuple[str, int]:
    """Train and promote MODEL on historical leads; write the scored history and its labels. (version, rows)."""
    import psycopg
    from mlflow import MlflowClient

    from models.fit import FitOptions
    from models.train import train_frame
    from serving.model import load_version

    rng = np.random.default_rng(seed)
    hist, p = leads_frame(20_000, rng)
    hist.insert(0, "lead_id", [f"H{i:07d}" for i in range(len(hist))])
    hist.insert(1, "event_timestamp", pd.Timestamp(now - timedelta(days=days + 60))
                + pd.to_timedelta(rng.uniform(0, 50, len(hist)), unit="D"))
    hist.insert(2, "label", (rng.random(len(hist)) < p).astype("int64"))
    outcome = train_frame(settings, hist, f"{DATASET}_v1", FitOptions(trials=0, max_epochs=5, progress=False),
                          DATASET, MODEL, say=lambda _: None)
    MlflowClient().set_registered_model_alias(MODEL, "champion", outcome.version)
    scorer = load_version(MODEL, str(outcome.version)).scorer
    new, p = leads_frame(leads, rng)
    records = new.to_dict("records")
    scores = np.concatenate([scorer.score_records(records[i:i + 20_000], method=None)["score"]
                             for i in range(0, leads, 20_000)])
    at = pd.Timestamp(now - timedelta(days=days)) + pd.to_timedelta(np.linspace(0, days * 86400, leads), unit="s")
    ids = [f"L{i:07d}" for i in range(leads)]
    converts = rng.random(leads) < p
    label_at = at + pd.to_timedelta(rng.uniform(1, 20, leads), unit="D")
    lost = ~converts & (rng.random(leads) < 0.5)
    buf = io.StringIO()
    features = new.to_json(orient="records", lines=True).splitlines()
    for i in range(leads):
        buf.write(f"{at[i].isoformat()}\tscore\tbench\tbench\tbench\t{ids[i]}\t{MODEL}\t{outcome.version}\t"
                  f"{DATASET}_v1\t{float(scores[i])!r}\tB\t0\t{features[i].replace(chr(92), chr(92) * 2)}\n")
    with psycopg.connect(settings.pg_dsn()) as conn, conn.cursor() as cur:
        with cur.copy("COPY serving.prediction_log (at, endpoint, request_id, key_id, tenant, lead_id, model_name, "
                      "model_version, feature_service, score, tier, inline_features, features) FROM STDIN") as copy:
            copy.write(buf.getvalue())
        with cur.copy("COPY offline.labels (dataset, lead_id, event_timestamp, label) FROM STDIN") as copy:
            for i in np.flatnonzero((converts | lost) & (label_at <= pd.Timestamp(now))):
                copy.write_row((DATASET, ids[i], label_at[i].to_pydatetime(), int(converts[i])))
    return str(outcome.version), leads


def bare_read(settings: Settings, version: str, now: datetime, days: int) -> float:
    """Seconds to COPY the cycle's rows out as CSV, unparsed: the day's window, the cohorts and the reference."""
    import psycopg

    t0 = time.perf_counter()
    with psycopg.connect(settings.pg_dsn()) as conn, conn.cursor() as cur:
        for query, args in (
                ("SELECT at, score, features FROM serving.prediction_log WHERE model_name = {} AND model_version = {}"
                 " AND at >= {} AND at < {}", (MODEL, version, now - timedelta(days=1), now)),
                ("SELECT at, score, lead_id FROM serving.prediction_log WHERE model_name = {} AND model_version = {}"
                 " AND at >= {} AND at < {}", (MODEL, version, now - timedelta(days=days), now)),
                ("SELECT lead_id, label, event_timestamp FROM offline.labels WHERE dataset = {}", (DATASET,)),
                ("SELECT score, features FROM monitoring.reference_rows WHERE model_name = {}", (MODEL,))):
            from psycopg import sql

            select = sql.SQL(query).format(*[sql.Literal(a) for a in args])
            with cur.copy(sql.SQL("COPY ({}) TO STDOUT WITH (FORMAT csv)").format(select)) as copy:
                for _ in copy:
                    pass
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=30)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory(prefix="leadscore-bench-cycle-") as tmp:
        env = stack_env(Path(tmp) / "state")
        subprocess.run([str(LEADSCORE), "infra", "up"], env=env, check=True, capture_output=True, cwd=REPO)
        try:
            import os

            os.environ.update(env)
            settings = Settings.load(env)
            from models.train import configure_mlflow

            configure_mlflow(settings)
            now = datetime.now(UTC)
            t0 = time.perf_counter()
            version, rows = setup(settings, args.leads, args.days, now)
            print(f"set up: {MODEL} v{version} trained on 20,000 historical leads; {rows:,} leads scored over "
                  f"{args.days} days with their features and labels ({time.perf_counter() - t0:.1f} s)")
            floor = bare_read(settings, version, now, args.days)
            from monitoring.loop import LoopOptions, cycle

            options = LoopOptions(window=timedelta(days=1), performance_window=timedelta(days=args.days),
                                  sustain=(3, 3), auc_drop=0.99)  # measured without a retrain
            lines: list[str] = []
            t0 = time.perf_counter()
            decision = cycle(settings, MODEL, options, now, say=lines.append)
            seconds = time.perf_counter() - t0
            print("\n".join(f"  {line}" for line in lines if not line.startswith(("report:", "MLflow run"))))
            print(f"  {decision.line()}")
            print(f"one monitor cycle: {seconds:.1f} s (aim < 120 s); bare COPY of the same rows: {floor:.2f} s "
                  f"({seconds / floor:.1f}x)")
            print(json.dumps({"cycle_s": round(seconds, 2), "floor_s": round(floor, 3), "leads": rows}))
        finally:
            subprocess.run([str(LEADSCORE), "infra", "down", "--purge"], env=env, capture_output=True, cwd=REPO)


if __name__ == "__main__":
    main()
