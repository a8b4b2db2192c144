"""How fast LeadScore starts, beside the floor measured in the same run.

- `leadscore --help` against `python -c pass` (the interpreter alone).
- a cold `leadscore infra up` (servers installed and initialised, all stopped) against the floor: the same four
  server processes launched directly and waited for only until their TCP ports open (no health queries, no
  migrations, no MLflow database check).

Runs in its own temporary state directory on free ports; prints a table and exits. Usage:
    python bench/startup.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from infra.config import Settings  # noqa: E402
from infra.process import port_open, wait_until  # noqa: E402
from infra.stack import servers  # noqa: E402
from tests.conftest import stack_env  # noqa: E402

LEADSCORE = Path(sys.executable).parent / "leadscore"


def timed(argv: list[str], env: dict[str, str] | None = None) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, env=env, check=True, capture_output=True, cwd=REPO)
    return time.perf_counter() - t0


def bare_start(settings: Settings) -> float:
    """Launch each server directly, wait for its port only; return seconds."""
    t0 = time.perf_counter()
    started = [s for s in servers(settings)]
    for server in started[:3]:
        server.launch()
    for server in started[:3]:
        wait_until(lambda s=server: port_open(settings.host, s.port), 60, server.name)
    started[3].launch()  # MLflow needs PostgreSQL up
    wait_until(lambda: port_open(settings.host, started[3].port), 90, "mlflow")
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    help_times = [timed([str(LEADSCORE), "--help"]) for _ in range(args.repeats * 3)]
    floor_times = [timed([sys.executable, "-c", "pass"]) for _ in range(args.repeats * 3)]

    with tempfile.TemporaryDirectory(prefix="leadscore-bench-") as tmp:
        env = stack_env(Path(tmp) / "state")
        settings = Settings.load(env)
        subprocess.run([str(LEADSCORE), "infra", "up"], env=env, check=True, capture_output=True)  # initialise
        up_times, bare_times = [], []
        try:
            for _ in range(args.repeats):
                subprocess.run([str(LEADSCORE), "infra", "down"], env=env, check=True, capture_output=True)
                up_times.append(timed([str(LEADSCORE), "infra", "up"], env))
                subprocess.run([str(LEADSCORE), "infra", "down"], env=env, check=True, capture_output=True)
                bare_times.append(bare_start(settings))
        finally:
            subprocess.run([str(LEADSCORE), "infra", "down", "--purge"], env=env, capture_output=True)

    rows = [
        ("leadscore --help", statistics.median(help_times), "python -c pass", statistics.median(floor_times)),
        ("leadscore infra up (cold, 4 servers)", statistics.median(up_times),
         "bare launch, ports open", statistics.median(bare_times)),
    ]
    print(f"{'measure':40} {'median s':>9}   {'baseline':28} {'median s':>9} {'ratio':>6}")
    for name, value, base_name, base in rows:
        print(f"{name:40} {value:9.3f}   {base_name:28} {base:9.3f} {value / base:6.2f}")
    print(f"goals: --help < 1 s ({'met' if rows[0][1] < 1 else 'MISSED'}), "
          f"infra up < 15 s ({'met' if rows[1][1] < 15 else 'MISSED'})")


if __name__ == "__main__":
    main()
