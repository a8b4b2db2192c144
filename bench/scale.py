"""Scale on one machine (issue #18, its first part): ingest throughput and memory beside their floors, one run.

For each size, synthetic leads (the feature-store bench's 12 typed features, seeded) are
- copied raw into an UNLOGGED table of text columns (the floor: PostgreSQL's COPY with no types, keys or checks),
- copied typed into a table with the dataset's primary key (the floor with types and a key), and
- ingested by the real command, `leadscore ingest crm` in its own process (typed checks, PII hashing, consent and
  its hash-chained ledger, labels, rejects, upserts), its peak RSS read from the kernel when it ends.
A private stack on free ports, removed at the end. Usage:
    python bench/scale.py [--rows 100000 1000000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.features import SPEC  # noqa: E402
from infra.config import Settings  # noqa: E402
from tests.conftest import stack_env  # noqa: E402

LEADSCORE = Path(sys.executable).parent / "leadscore"
AIM_ROWS_S = 250_000


def _floors(settings: Settings, csv_path: Path) -> tuple[float, float]:
    """Seconds for a bare text COPY and for a typed COPY into a keyed table, of the same file."""
    import psycopg

    with psycopg.connect(settings.pg_dsn()) as conn:
        header = csv_path.open().readline().strip().split(",")
        conn.execute("DROP TABLE IF EXISTS bench_text, bench_typed")
        conn.execute("CREATE UNLOGGED TABLE bench_text (" + ", ".join(f'"{c}" text' for c in header) + ")")
        conn.execute("CREATE TABLE bench_typed (lead_id text, updated_at timestamptz, age bigint, income double "
                     "precision, cibil bigint, city text, tier bigint, employment text, household bigint, views "
                     "bigint, emails bigint, site_s double precision, salaried boolean, profession text, "
                     "PRIMARY KEY (lead_id, updated_at))")
        conn.commit()
        took = []
        for table in ("bench_text", "bench_typed"):
            t0 = time.perf_counter()
            with conn.cursor().copy(f"COPY {table} FROM STDIN WITH (FORMAT csv, HEADER)") as cp, \
                    csv_path.open() as fh:
                while block := fh.read(1 << 20):
                    cp.write(block)
            conn.commit()
            took.append(time.perf_counter() - t0)
        conn.execute("DROP TABLE bench_text, bench_typed")
        conn.commit()
    return took[0], took[1]


def _ingest(env: dict[str, str], csv_path: Path, spec: Path) -> tuple[float, float]:
    """Seconds and peak RSS (MiB, this process's own, from wait4) of `leadscore ingest crm` in a process of its own."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([str(LEADSCORE), "ingest", "crm", str(csv_path), "--spec", str(spec)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    took = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"ingest failed: {(err.strip().splitlines() or ['?'])[-1]}")
    return took, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    args = parser.parse_args()
    lines = []
    with tempfile.TemporaryDirectory(prefix="leadscore-scale-") as tmp_dir:
        tmp = Path(tmp_dir)
        env = stack_env(tmp / "state")
        settings = Settings.load(env)
        up = subprocess.run([str(LEADSCORE), "infra", "up"], env=env, capture_output=True, text=True)
        if up.returncode != 0:
            raise SystemExit(f"infra up failed: {(up.stderr or up.stdout).strip().splitlines()[-1]}")
        try:
            spec = tmp / "bench_leads.yaml"
            spec.write_text(SPEC)
            for i, n in enumerate(sorted(args.rows)):
                csv_path = tmp / f"leads_{n}.csv"
                # in a process of its own: a child's peak RSS on Linux starts at its parent's at the fork, so the
                # bench stays small (the frame of a million rows would otherwise count as the ingest's)
                subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(REPO)!r}); from "
                                f"bench.features import synthetic_csv; from pathlib import Path; "
                                f"synthetic_csv(Path({str(csv_path)!r}), {n}, seed={7 + i})"], check=True)
                text_s, typed_s = _floors(settings, csv_path)
                ours_s, peak = _ingest(env, csv_path, spec)
                size = csv_path.stat().st_size / 2**20
                lines.append((n, n / ours_s, n / text_s, n / typed_s, peak, size, ours_s))
                print(f"{n:,} rows done", file=sys.stderr, flush=True)
        finally:
            subprocess.run([str(LEADSCORE), "infra", "down", "--purge"], env=env, capture_output=True)
    print(f"{'ingest':>12} {'ours rows/s':>12} {'bare COPY':>12} {'ratio':>6} {'typed COPY':>11} {'ratio':>6} "
          f"{'peak RSS':>9} {'file':>8} {'wall':>7}")
    for n, ours, text, typed, peak, size, wall in lines:
        print(f"{n:>12,} {ours:>12,.0f} {text:>12,.0f} {ours / text:>6.2f} {typed:>11,.0f} {ours / typed:>6.2f} "
              f"{peak:>7,.0f} M {size:>6,.0f} M {wall:>6.1f}s")
    n, ours = lines[-1][0], lines[-1][1]
    print(f"{'met' if ours >= AIM_ROWS_S else 'MISSED'}: ingest of {n:,} rows at {ours:,.0f} rows/s >= "
          f"{AIM_ROWS_S:,} (issue #18)")
    print(f"{os.cpu_count()} cores; the command's time includes its own start (imports, connection, checks of "
          "the spec and the file's header)")


if __name__ == "__main__":
    main()
