"""The command line answers fast (no heavy imports) and speaks in one readable line when it fails."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import leadscore, stack_env

HEAVY = ["feast", "torch", "mlflow", "pandas", "sklearn", "xgboost", "lightgbm", "bentoml", "faust", "psycopg"]


def test_help_imports_no_heavy_library() -> None:
    code = ("import sys, json; sys.argv = ['leadscore', '--help']\n"
            "from infra.cli import app\n"
            "try:\n    app()\nexcept SystemExit:\n    pass\n"
            f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "infra" in done.stdout
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_status_of_a_stack_never_started_exits_1(tmp_path: Path) -> None:
    done = leadscore(["infra", "status"], stack_env(tmp_path / "state"), timeout=60)
    assert done.returncode == 1
    assert done.stdout.count("stopped") == 6  # postgres, redis, kafka, prometheus, evidently, mlflow


def test_a_bad_setting_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    env = stack_env(tmp_path / "state")
    env["LEADSCORE_KAFKA_PORT"] = "kafka"
    done = leadscore(["infra", "status"], env, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip() == "error: LEADSCORE_KAFKA_PORT='kafka' is not a TCP port: set it to a number " \
                                  "between 1 and 65535"
