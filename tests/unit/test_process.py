"""PID files: `down` stops only processes we started, never a stranger that reuses a PID."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from infra.migrate import discover
from infra.process import ServiceError, ensure_port_free, read_pid
from tests.conftest import leadscore, stack_env


def test_read_pid_ignores_stale_and_foreign_pids(tmp_path: Path) -> None:
    pidfile = tmp_path / "x.pid"
    assert read_pid(pidfile, "redis-server") is None
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        pidfile.write_text(f"{stranger.pid}\n")
        assert read_pid(pidfile, "redis-server") is None
        assert read_pid(pidfile, "time.sleep") == stranger.pid
    finally:
        stranger.kill()
        stranger.wait()
    assert read_pid(pidfile, "time.sleep") is None
    pidfile.write_text("not a pid")
    assert read_pid(pidfile, "x") is None


def test_down_leaves_a_foreign_process_alone(tmp_path: Path) -> None:
    env = stack_env(tmp_path / "state")
    redis_home = tmp_path / "state" / "redis"
    redis_home.mkdir(parents=True)
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (redis_home / "redis.pid").write_text(f"{stranger.pid}\n")
        done = leadscore(["infra", "down"], env, timeout=60)
        assert done.returncode == 0
        assert "nothing of ours was running" in done.stdout
        assert stranger.poll() is None, "down killed a process it did not start"
    finally:
        stranger.kill()
        stranger.wait()


def test_ensure_port_free_names_the_variable_to_change() -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        with pytest.raises(ServiceError, match=f"port 127.0.0.1:{port} is already in use.*LEADSCORE_X_PORT"):
            ensure_port_free("x", "127.0.0.1", port, "LEADSCORE_X_PORT")
    finally:
        holder.close()
    ensure_port_free("x", "127.0.0.1", port, "LEADSCORE_X_PORT")


def test_migrations_are_numbered_and_ordered(tmp_path: Path) -> None:
    (tmp_path / "0002_b.sql").write_text("SELECT 2;")
    (tmp_path / "0001_a.sql").write_text("SELECT 1;")
    assert [(m.version, m.name) for m in discover(tmp_path)] == [(1, "a"), (2, "b")]
    (tmp_path / "oops.sql").write_text("SELECT 3;")
    with pytest.raises(ServiceError, match="must start with a number"):
        discover(tmp_path)
