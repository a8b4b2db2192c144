"""Feature-store speed, each figure beside the plainest way to do the same thing, measured in the same run.

- ingest: `ingest_crm` (typed checks, PII, consent, labels, upsert) vs a bare COPY of the same CSV into a text table
- materialize: LeadScore's incremental materialization vs Feast's own `FeatureStore.materialize` (at the smaller
  size; it needs minutes and GBs at 1M) and vs a floor: SELECT the rows and pipelined HSET of their raw text
- online read of 1 and 100 leads: OnlineReader vs Feast's `get_online_features` vs bare Redis HGETALL (pipelined)

Synthetic leads (seeded) in a private stack on free ports, removed at the end. Usage:
    python bench/features.py [--leads 100000 1000000] [--reads 2000]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from infra.config import Settings  # noqa: E402
from tests.conftest import stack_env  # noqa: E402

LEADSCORE = Path(sys.executable).parent / "leadscore"
SPEC = """name: bench_leads
description: synthetic broker leads for bench/features.py
owner: bench
entity: {column: lead_id}
event_timestamp: {column: updated_at}
consent: {scoring: {default: true, source: synthetic}}
features:
  - {column: age, name: age, type: int, min: 18, max: 100}
  - {column: income, name: annual_income_inr, type: float, min: 0}
  - {column: cibil, name: cibil_score, type: int, min: 300, max: 900}
  - {column: city, name: city, type: string}
  - {column: tier, name: city_tier, type: int, min: 1, max: 3}
  - {column: employment, name: employment_type, type: string}
  - {column: household, name: household_size, type: int, min: 1, max: 20}
  - {column: views, name: listing_views_30d, type: int, min: 0}
  - {column: emails, name: emails_opened_30d, type: int, min: 0}
  - {column: site_s, name: time_on_site_s_30d, type: float, min: 0}
  - {column: salaried, name: is_salaried, type: bool}
  - {column: profession, name: profession, type: string}
"""


def synthetic_csv(path: Path, n: int, seed: int = 7) -> None:
    rng = np.random.default_rng(seed)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    frame = pd.DataFrame({
        "lead_id": [f"L{i:08d}" for i in range(n)],
        "updated_at": [(start + timedelta(seconds=int(s))).isoformat() for s in rng.integers(0, 86400 * 300, n)],
        "age": rng.integers(21, 70, n), "income": rng.lognormal(13.5, 0.6, n).round(0),
        "cibil": rng.integers(300, 901, n), "city": rng.choice(["Mumbai", "Pune", "Delhi", "Jaipur", "Indore"], n),
        "tier": rng.integers(1, 4, n), "employment": rng.choice(["salaried", "self_employed", "business"], n),
        "household": rng.integers(1, 8, n), "views": rng.poisson(6, n), "emails": rng.poisson(2, n),
        "site_s": rng.exponential(600, n).round(1), "salaried": rng.choice(["yes", "no"], n),
        "profession": rng.choice(["engineer", "doctor", "teacher", "trader", "other"], n),
    })
    frame.to_csv(path, index=False)


def percentiles(samples: list[float]) -> tuple[float, float]:
    ms = np.array(samples) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def timed_reads(fn, ids: list[list[str]]) -> tuple[float, float]:  # noqa: ANN001
    samples = []
    for batch in ids:
        t0 = time.perf_counter()
        fn(batch)
        samples.append(time.perf_counter() - t0)
    return percentiles(samples)


def bench_size(settings: Settings, store, n: int, tmp: Path, reads: int, feast_materialize: bool) -> list[tuple]:  # noqa: ANN001
    import psycopg
    import redis

    from pipelines.feature_store import apply, feature_store
    from pipelines.ingest import ingest_crm
    from pipelines.materialize import materialize
    from pipelines.online import OnlineReader, online_features
    from pipelines.spec import load_spec

    rows = []
    csv_path = tmp / f"leads_{n}.csv"
    synthetic_csv(csv_path, n)
    with psycopg.connect(settings.pg_dsn()) as conn:  # a clean slate for this size
        conn.execute("DROP TABLE IF EXISTS offline.bench_leads")
        conn.execute("DELETE FROM offline.materialization_runs WHERE feature_view = 'bench_leads'")
        conn.execute("DROP TABLE IF EXISTS bench_plain")
        conn.execute("CREATE UNLOGGED TABLE bench_plain (" + ", ".join(
            f'"{c}" text' for c in pd.read_csv(csv_path, nrows=0).columns) + ")")
        t0 = time.perf_counter()
        with open(csv_path) as fh, conn.cursor().copy("COPY bench_plain FROM STDIN WITH (FORMAT csv, HEADER)") as cp:
            while block := fh.read(1 << 20):
                cp.write(block)
        plain_copy = time.perf_counter() - t0
    t0 = time.perf_counter()
    ingest_crm(settings, csv_path, load_spec(tmp / "datasets" / "bench_leads.yaml"), progress=False)
    ours = time.perf_counter() - t0
    rows.append((f"ingest {n:,} rows", n / ours, "bare COPY, text columns", n / plain_copy, "rows/s"))

    apply(settings, tmp)
    store = feature_store(settings, tmp)
    t0 = time.perf_counter()
    materialize(settings, ["bench_leads"], repo_path=tmp)
    ours = time.perf_counter() - t0
    client = redis.Redis.from_url(settings.redis_url())
    t0 = time.perf_counter()  # the floor: read the rows, HSET their raw text, pipelined
    with psycopg.connect(settings.pg_dsn()) as conn, conn.transaction(), conn.cursor(name="floor") as cur:
        cur.execute("SELECT * FROM offline.bench_leads")
        while batch := cur.fetchmany(20_000):
            pipe = client.pipeline(transaction=False)
            for r in batch:
                pipe.hset(f"floor:{r[0]}", mapping={str(i): str(v) for i, v in enumerate(r[1:])})
            pipe.execute()
    floor = time.perf_counter() - t0
    rows.append((f"materialize {n:,} leads", n / ours, "SELECT + pipelined HSET", n / floor, "rows/s"))
    if feast_materialize:
        client.flushdb()
        fv = store.get_feature_view("bench_leads")
        t0 = time.perf_counter()
        store.materialize(datetime(2025, 12, 31, tzinfo=UTC), datetime.now(UTC), [fv.name])
        feast_s = time.perf_counter() - t0
        rows.append((f"materialize {n:,} leads", n / ours, "Feast FeatureStore.materialize", n / feast_s, "rows/s"))
    client.flushdb()
    materialize(settings, ["bench_leads"], repo_path=tmp)  # a clean online copy for the reads below

    rng = np.random.default_rng(1)
    one = [[f"L{i:08d}"] for i in rng.integers(0, n, reads)]
    hundred = [[f"L{i:08d}" for i in rng.integers(0, n, 100)] for _ in range(max(reads // 20, 20))]
    reader = OnlineReader(store, "bench_leads_v1")
    keys_of = {lead: reader.codec.key(lead) for batch in one + hundred for lead in batch}

    def bare(batch: list[str]) -> None:
        if len(batch) == 1:
            client.hgetall(keys_of[batch[0]])
            return
        pipe = client.pipeline(transaction=False)
        for lead in batch:
            pipe.hgetall(keys_of[lead])
        pipe.execute()

    for label, ids in (("1 lead", one), ("100 leads", hundred)):
        timed_reads(reader.read, ids[:50])  # warm-up
        p50, p99 = timed_reads(reader.read, ids)
        b50, b99 = timed_reads(bare, ids)
        f50, f99 = timed_reads(lambda b: online_features(store, "bench_leads_v1", b, request_time=False), ids)
        rows.append((f"online read {label} p50 ({n:,})", p50, "bare Redis HGETALL", b50, "ms"))
        rows.append((f"online read {label} p99 ({n:,})", p99, "bare Redis HGETALL", b99, "ms"))
        rows.append((f"online read {label} p99 ({n:,})", p99, "Feast get_online_features", f99, "ms"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--reads", type=int, default=2000)
    args = parser.parse_args()
    import shutil

    from pipelines.feature_store import FEATURE_REPO

    results = []
    with tempfile.TemporaryDirectory(prefix="leadscore-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        env = stack_env(tmp / "state")
        settings = Settings.load(env)
        subprocess.run([str(LEADSCORE), "infra", "up"], env=env, check=True, capture_output=True)
        try:
            repo = tmp / "repo"
            shutil.copytree(FEATURE_REPO, repo, ignore=shutil.ignore_patterns("__pycache__"))
            (repo / "datasets" / "bench_leads.yaml").write_text(SPEC)
            for i, n in enumerate(sorted(args.leads)):
                results += bench_size(settings, None, n, repo, args.reads, feast_materialize=(i == 0))
        finally:
            subprocess.run([str(LEADSCORE), "infra", "down", "--purge"], env=env, capture_output=True)
    print(f"{'measure':38} {'LeadScore':>12}   {'baseline (same run)':32} {'baseline':>10} {'ratio':>7}")
    for name, ours, base_name, base, unit in results:
        ratio = ours / base
        print(f"{name:38} {ours:12,.2f}   {base_name:32} {base:10,.2f} {ratio:7.2f}  {unit}")
    print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB")


if __name__ == "__main__":
    main()
