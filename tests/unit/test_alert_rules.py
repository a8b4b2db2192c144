"""The alert rules, checked by Prometheus's own `promtool` (installed with Debian's prometheus package)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

RULES = Path(__file__).resolve().parents[2] / "monitoring" / "prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


def promtool(*args: str, cwd: Path = RULES) -> subprocess.CompletedProcess[str]:
    """Run promtool (no skip when it is missing: `bash infra/bootstrap.sh` installs it)."""
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_every_rule_is_valid_and_passes_its_unit_tests() -> None:
    checked = promtool("check", "rules", "alerts.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", "alerts_test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_has_a_unit_test() -> None:
    alerts = {r["alert"] for g in yaml.safe_load((RULES / "alerts.yml").read_text())["groups"] for r in g["rules"]}
    tests = yaml.safe_load((RULES / "alerts_test.yml").read_text())["tests"]
    tested = {case["alertname"] for t in tests for case in t["alert_rule_test"] if case.get("exp_alerts")}
    assert alerts == tested, f"alerts without a firing test: {sorted(alerts - tested)}"


@pytest.mark.parametrize(("old", "new"), [
    ("> 7 * 86400", "> 8 * 86400"),  # a threshold moved: ModelStale no longer fires at 7 days
    ("leadscore_monitor_drift_share) > 0.3", "leadscore_monitor_drift_shares) > 0.3"),  # a misspelt metric
    ("group_left 0.8 *", "group_left 0.6 *"),  # RealizedPrecisionDrop's floor moved: it no longer fires
])
def test_a_broken_rule_fails_its_tests(tmp_path: Path, old: str, new: str) -> None:
    text = (RULES / "alerts.yml").read_text()
    assert old in text
    (tmp_path / "alerts.yml").write_text(text.replace(old, new))
    shutil.copy(RULES / "alerts_test.yml", tmp_path)
    tested = promtool("test", "rules", "alerts_test.yml", cwd=tmp_path)
    assert tested.returncode != 0 and "FAILED" in tested.stdout + tested.stderr
