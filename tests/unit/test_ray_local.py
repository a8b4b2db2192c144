"""Ray's settings (infra/ray_local.py): nothing reaches outside, and a bad address is one clear line."""

from __future__ import annotations

import socket

import pytest

from infra.config import ConfigError, Settings
from infra.ray_local import QUIET, check_address, quiet_env


def test_the_quiet_environment_turns_usage_stats_and_cloud_probes_off(tmp_path) -> None:  # noqa: ANN001
    env = quiet_env(Settings.load({"LEADSCORE_STATE_DIR": str(tmp_path)}))
    assert env["RAY_USAGE_STATS_ENABLED"] == "0" and env["RAY_USAGE_STATS_REPORT_URL"].startswith("http://127.0.0.1")
    assert (tmp_path / "ray" / "ray_bootstrap_config.yaml").read_text().strip() == "provider: {type: local}"
    assert env["HOME"] == str(tmp_path / "ray") and set(QUIET) <= set(env)


@pytest.mark.parametrize("address, reason", [("nonsense", "give HOST:PORT"), ("127.0.0.1:notaport", "HOST:PORT")])
def test_a_malformed_address_names_the_form(address: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        check_address(address)


def test_an_address_nobody_listens_on_is_refused_at_once() -> None:
    with socket.socket() as s:  # a port that was free a moment ago, now closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConfigError, match=f"127.0.0.1:{port}: no Ray cluster answers"):
        check_address(f"ray://127.0.0.1:{port}")


def test_a_listening_address_passes() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        check_address(f"127.0.0.1:{s.getsockname()[1]}")
