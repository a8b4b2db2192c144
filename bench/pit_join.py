"""Point-in-time join speed: pipelines.training_set.point_in_time_join beside Feast's own, measured in the same run.

Synthetic feature rows (seeded; default 1M leads x 3 rows = 3M rows, 10 numeric features, COPYed in) in a private
stack on free ports, removed at the end. Times our join for `--entity-rows` entity rows, then a baseline on a small
slice: Feast's `get_historical_features(...).to_df()` (PostgreSQL offline store; in a subprocess, stopped after
`--feast-timeout` s) and our join on the same slice, with rows/s, the ratio and whether the two frames are equal.
Usage:
    python bench/pit_join.py [--leads 1000000] [--entity-rows 1000000] [--rows-per-lead 3] [--baseline-rows 2000 10000]
"""

from __future__ import annotations

import argparse
import io
import multiprocessing as mp
import queue as queue_module
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from infra.config import Settings  # noqa: E402
from pipelines.training_set import ViewSpec, ensure_pit_index, point_in_time_join  # noqa: E402
from tests.conftest import stack_env  # noqa: E402

LEADSCORE = Path(sys.executable).parent / "leadscore"
TABLE = "public.bench_lead_features"
START = datetime(2025, 1, 1, tzinfo=UTC)
SPAN_S = 86400 * 365
US = pa.timestamp("us", "UTC")
FEATURES = [f"f_float_{i}" for i in range(6)] + [f"f_int_{i}" for i in range(4)]
VIEW = ViewSpec(name="bench_leads", table=TABLE, join_keys=("lead_id",), timestamp_column="event_timestamp",
                created_column="created_at", features=tuple(FEATURES), ttl=timedelta(days=90))


def lead_ids(idx: np.ndarray) -> np.ndarray:
    return np.char.add("L", np.char.zfill(idx.astype(str), 8))


def generate(dsn: str, leads: int, rows_per_lead: int, seed: int = 11, batch: int = 500_000) -> None:
    """COPY leads x rows_per_lead feature rows into TABLE (random event times within a year, 10 features)."""
    rng = np.random.default_rng(seed)
    cols = ", ".join([f"{c} float8" for c in FEATURES[:6]] + [f"{c} int8" for c in FEATURES[6:]])
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
        conn.execute(f"CREATE TABLE {TABLE} (lead_id text NOT NULL, event_timestamp timestamptz NOT NULL, "
                     f"created_at timestamptz NOT NULL, {cols})")
        total = leads * rows_per_lead
        for start in range(0, total, batch):
            n = min(batch, total - start)
            idx = np.arange(start, start + n) % leads
            ts = (START.timestamp() + rng.integers(0, SPAN_S, n)) * 1_000_000
            data = {"lead_id": lead_ids(idx), "event_timestamp": pa.array(ts.astype("int64"), US),
                    "created_at": pa.array((ts + rng.integers(0, 3600, n) * 1_000_000).astype("int64"), US)}
            for c in FEATURES[:6]:
                data[c] = rng.normal(size=n).round(6)
            for c in FEATURES[6:]:
                data[c] = rng.integers(0, 1000, n)
            buf = io.BytesIO()
            pacsv.write_csv(pa.table(data), buf, pacsv.WriteOptions(include_header=False))
            with conn.cursor().copy(f"COPY {TABLE} FROM STDIN (FORMAT csv)") as copy:
                copy.write(buf.getvalue())
        conn.execute(f"VACUUM ANALYZE {TABLE}")


def entities(leads: int, n: int, seed: int = 5) -> pd.DataFrame:
    """n entity rows: random leads at random times (a tenth of them for leads without feature rows)."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "lead_id": lead_ids(rng.integers(0, int(leads * 1.1), n)),
        "event_timestamp": pd.to_datetime(START.timestamp() + rng.integers(0, SPAN_S + 86400 * 30, n), unit="s",
                                          utc=True),
        "label": rng.integers(0, 2, n),
    })


def feast_job(settings: Settings, repo: Path, entity_df: pd.DataFrame, queue: mp.Queue) -> None:
    """Child process: Feast's get_historical_features on entity_df; puts "ready", then (seconds, frame)."""
    from tests.integration.test_training_set import feast_store

    store, refs = feast_store(settings, repo, "bench_pit", [VIEW])
    queue.put("ready")
    t0 = time.perf_counter()
    frame = store.get_historical_features(entity_df=entity_df, features=refs).to_df()
    queue.put((time.perf_counter() - t0, frame))


def feast_baseline(settings: Settings, repo: Path, entity_df: pd.DataFrame, timeout: float):
    """(seconds, frame) of Feast's join, or (None, None) when it ran past `timeout` (its query is then ended)."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=feast_job, args=(settings, repo, entity_df, queue))
    proc.start()
    try:
        assert queue.get(timeout=120) == "ready"  # Feast imported, repo applied
        return queue.get(timeout=timeout)
    except queue_module.Empty:
        return None, None
    finally:
        proc.kill()
        proc.join()
        with psycopg.connect(settings.pg_dsn(), autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE pid <> pg_backend_pid() AND query LIKE '%entity_row_unique_id%'")


def same(ours: pd.DataFrame, theirs: pd.DataFrame) -> bool:
    """Equal feature values per (lead, timestamp, label) row, NaN-aware."""
    theirs = theirs.assign(event_timestamp=pd.to_datetime(theirs["event_timestamp"], utc=True))
    cols = ["lead_id", "event_timestamp", "label"]
    a = ours.sort_values(cols).reset_index(drop=True)[cols + FEATURES]
    b = theirs.sort_values(cols).reset_index(drop=True)[cols + FEATURES]
    return len(a) == len(b) and all(
        np.allclose(a[c].astype(float), b[c].astype(float), equal_nan=True) for c in FEATURES)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--entity-rows", type=int, default=1_000_000)
    parser.add_argument("--rows-per-lead", type=int, default=3)
    parser.add_argument("--baseline-rows", type=int, nargs="+", default=[2_000, 10_000])
    parser.add_argument("--feast-timeout", type=float, default=120)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="leadscore-bench-") as tmp:
        env = stack_env(Path(tmp) / "state")
        settings = Settings.load(env)
        subprocess.run([str(LEADSCORE), "infra", "up"], env=env, check=True, capture_output=True, cwd=REPO)
        try:
            run(settings, Path(tmp), args)
        finally:
            subprocess.run([str(LEADSCORE), "infra", "down", "--purge"], env=env, capture_output=True, cwd=REPO)


def run(settings: Settings, tmp: Path, args: argparse.Namespace) -> None:
    dsn = settings.pg_dsn()
    t0 = time.perf_counter()
    generate(dsn, args.leads, args.rows_per_lead)
    rows = args.leads * args.rows_per_lead
    print(f"feature rows: {rows:,} ({args.leads:,} leads x {args.rows_per_lead}, {len(FEATURES)} features), "
          f"COPY + VACUUM ANALYZE {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as conn:
        ensure_pit_index(conn, VIEW)
        conn.execute(f"ANALYZE {TABLE}")
    print(f"one-time index {TABLE.split('.')[-1]}_pit_idx: {time.perf_counter() - t0:.1f} s")

    entity_df = entities(args.leads, args.entity_rows)
    t0 = time.perf_counter()
    result = point_in_time_join(dsn, entity_df, [VIEW])
    big = time.perf_counter() - t0
    hits = result[FEATURES[0]].notna().mean()
    print(f"point_in_time_join, {len(entity_df):,} entity rows: {big:.1f} s, {len(entity_df) / big:,.0f} rows/s "
          f"({hits:.0%} rows matched)  goal < 120 s: {'met' if big < 120 else 'MISSED'}")

    for n in args.baseline_rows:
        small = entity_df.iloc[:n]
        t0 = time.perf_counter()
        ours = point_in_time_join(dsn, small, [VIEW])
        ours_s = time.perf_counter() - t0
        feast_s, theirs = feast_baseline(settings, tmp / "feast_repo", small, args.feast_timeout)
        print(f"slice of {n:,} entity rows: point_in_time_join {ours_s:.2f} s ({n / ours_s:,.0f} rows/s)")
        if feast_s is None:
            print(f"  Feast get_historical_features: did not finish in {args.feast_timeout:g} s (stopped): "
                  f"< {n / args.feast_timeout:,.1f} rows/s; ours is > {args.feast_timeout / ours_s:,.0f}x faster")
        else:
            print(f"  Feast get_historical_features: {feast_s:.2f} s ({n / feast_s:,.0f} rows/s); "
                  f"ours is {feast_s / ours_s:,.1f}x faster; frames equal: {same(ours, theirs)}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process: {peak:,.0f} MiB")


if __name__ == "__main__":
    main()
