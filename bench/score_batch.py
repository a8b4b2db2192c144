"""Batch scoring (issue #18): `leadscore score-batch` in one process vs on Ray Data with 2 workers, one run.

A private stack on free ports: the health-insurance set (114k real leads) ingested and materialized, a small
untuned ensemble trained and promoted, then every consenting lead scored by the real command, first in one process,
then on a local Ray cluster (`--ray --workers 2`); the leads/s of the scoring phase (features read from Redis and
scored, as the command prints it) and the wall time of each, their ratio, and whether the two runs' scores agree to
1e-6. The stack is removed at the end. Usage:
    python bench/score_batch.py
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from infra.config import Settings  # noqa: E402
from tests.conftest import SHARED_DATA, stack_env  # noqa: E402

LEADSCORE = Path(sys.executable).parent / "leadscore"
MODEL = "bench-score-batch"
AIM = 1.6  # Ray Data with 2 workers vs one process (issue #18)


def _run(args: list[str], env: dict[str, str]) -> tuple[str, float]:
    t0 = time.perf_counter()
    done = subprocess.run([str(LEADSCORE), *args], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"leadscore {args[0]} failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
    return done.stdout, time.perf_counter() - t0


def _scores(settings: Settings, run_id: str) -> dict[str, float]:
    import psycopg

    with psycopg.connect(settings.pg_dsn()) as conn:
        return dict(conn.execute("SELECT lead_id, score FROM serving.batch_scores WHERE run_id = %s", (run_id,)))


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        env = {**stack_env(Path(tmp) / "state"), "LEADSCORE_MODEL_NAME": MODEL}
        _run(["infra", "up"], env)
        try:
            settings = Settings.load(env)
            _run(["features", "apply"], env)
            _run(["ingest", "crm", str(SHARED_DATA / "health_insurance_cross_sell_30pct_subset.csv"), "--spec",
                  str(REPO / "feature_repo/datasets/health_insurance.yaml")], env)
            _run(["materialize"], env)
            _run(["train", "--feature-service", "health_insurance_v1", "--trials", "0", "--max-epochs", "5",
                  "--model-name", MODEL, "--no-progress"], env)
            _run(["promote", "--model-name", MODEL], env)
            rows = []
            for label, extra in (("one process", []), ("Ray Data, 2 workers", ["--ray", "--workers", "2"])):
                out, wall = _run(["score-batch", "--no-progress", *extra], env)
                run_id = re.search(r"run (bs_\w+)", out).group(1)
                scored = int(re.search(r": ([\d,]+) of", out).group(1).replace(",", ""))
                rate = float(re.search(r"\(([\d,]+) leads/s scoring\)", out).group(1).replace(",", ""))
                rows.append((label, scored, rate, wall, _scores(settings, run_id)))
                print(f"{label} done", file=sys.stderr, flush=True)
        finally:
            subprocess.run([str(LEADSCORE), "infra", "down", "--purge"], env=env, capture_output=True)
    print(f"{'score-batch':<22} {'leads':>9} {'leads/s':>9} {'ratio':>6} {'wall':>7}")
    base = rows[0][2]
    for label, scored, rate, wall, _ in rows:
        print(f"{label:<22} {scored:>9,} {rate:>9,.0f} {rate / base:>6.2f} {wall:>6.1f}s")
    one, ray = rows[0][4], rows[1][4]
    same = set(one) == set(ray) and max((abs(one[k] - ray[k]) for k in one), default=0.0) <= 1e-6
    print(f"scores identical to 1e-6: {'yes' if same else 'NO'}")
    ratio = rows[1][2] / base
    print(f"{'met' if ratio >= AIM else 'MISSED'}: Ray Data with 2 workers at {ratio:.2f}x the one process's leads/s "
          f">= {AIM}x (issue #18)")
    print(f"{os.cpu_count()} cores; leads/s is the scoring phase (online features read and scored); wall includes "
          "each command's start, the Ray cluster's start and the writes")


if __name__ == "__main__":
    main()
