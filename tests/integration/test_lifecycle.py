"""`leadscore infra` as a user drives it: idempotent up, data that survives a restart, clear failures."""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from pathlib import Path

import psutil
import pytest

from infra.config import Settings
from infra.stack import servers
from tests.conftest import leadscore, stack_env

pytestmark = pytest.mark.integration


def _gone(pid: int) -> bool:
    return not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def _pids(settings: Settings) -> dict[str, int | None]:
    return {s.name: s.pid() for s in servers(settings)}


def test_up_twice_is_a_no_op(stack_env_vars: dict[str, str], settings: Settings) -> None:
    before = _pids(settings)
    again = leadscore(["infra", "up"], stack_env_vars)
    assert again.returncode == 0, again.stderr
    assert "starting" not in again.stdout
    assert _pids(settings) == before
    assert all(before.values())


def test_status_table_lists_every_server_healthy(stack_env_vars: dict[str, str], settings: Settings) -> None:
    done = leadscore(["infra", "status"], stack_env_vars)
    assert done.returncode == 0, done.stdout + done.stderr
    for server in servers(settings):
        line = next(ln for ln in done.stdout.splitlines() if f" {server.name} " in ln)
        assert f"{settings.host}:{server.port}" in line and "healthy" in line and str(server.pid()) in line


def _listening(proc: psutil.Process) -> list:
    """The process' listening sockets; none when it has exited meanwhile (a server's short-lived helper child)."""
    try:
        return [c for c in proc.net_connections("inet") if c.status == psutil.CONN_LISTEN]
    except psutil.NoSuchProcess:
        return []


def test_every_server_listens_on_loopback_only(settings: Settings) -> None:
    for server in servers(settings):
        pid = server.pid()
        assert pid is not None
        proc = psutil.Process(pid)
        family = [proc, *proc.children(recursive=True)]
        listening = {(c.laddr.ip, c.laddr.port) for p in family for c in _listening(p)}
        assert (settings.host, server.port) in listening, server.name
        assert {ip for ip, _ in listening} == {"127.0.0.1"}, (server.name, listening)


@pytest.mark.skipif(os.geteuid() != 0, reason="servers run as the invoking user when it is not root")
def test_run_as_root_every_server_runs_as_an_unprivileged_user(settings: Settings) -> None:
    users = {s.name: psutil.Process(s.pid()).username() for s in servers(settings)}
    from infra.process import RunAs
    from infra.unprivileged import python_for

    # the Python servers (MLflow, the Evidently UI) run under an interpreter the service user can start: the venv's,
    # or a copy of its base interpreter where the venv's is out of reach (pyenv's under /root here); only where the
    # checkout itself is unreadable do they run as root, and their logs say so
    interp = python_for(RunAs.lookup(settings.service_user))
    python = ("mlflow", "evidently")
    unprivileged = ("postgres", "redis", "kafka", *(() if interp.why_not else python))
    for name in unprivileged:
        assert users[name] == settings.service_user, users
    assert users["prometheus"] == "prometheus", users
    if interp.why_not:
        for server in servers(settings):
            if server.name in python:
                assert users[server.name] == "root" and "runs as root" in server.log.read_text(), users
    for name in unprivileged[1:]:  # their folders are theirs alone, outside the root-only state directory
        home = (settings.state_dir / name).resolve()
        assert home.owner() == settings.service_user and home.stat().st_mode & 0o777 == 0o700, name
    assert settings.state_dir.stat().st_mode & 0o777 == 0o700


def test_secrets_live_in_the_state_dir_with_mode_0600(settings: Settings) -> None:
    for name in ("pg", "redis"):
        path = settings.secrets_dir / f"{name}.password"
        assert path.stat().st_mode & 0o777 == 0o600
    assert (settings.state_dir / "redis" / "redis.conf").stat().st_mode & 0o777 == 0o600


def test_logs_command_prints_a_servers_log(stack_env_vars: dict[str, str]) -> None:
    done = leadscore(["infra", "logs", "postgres", "-n", "1000000"], stack_env_vars)
    assert done.returncode == 0 and "database system is ready to accept connections" in done.stdout
    last = leadscore(["infra", "logs", "postgres", "-n", "3"], stack_env_vars)  # the end of the same log
    assert last.returncode == 0 and last.stdout.splitlines() == done.stdout.splitlines()[-3:]
    unknown = leadscore(["infra", "logs", "nosuch"], stack_env_vars)
    assert unknown.returncode == 1 and "unknown service 'nosuch'" in unknown.stderr


def test_taken_port_fails_fast_with_one_line_and_starts_nothing(tmp_path: Path) -> None:
    env = stack_env(tmp_path / "state")
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    squatter.bind(("127.0.0.1", int(env["LEADSCORE_REDIS_PORT"])))
    squatter.listen()
    try:
        t0 = time.monotonic()
        done = leadscore(["infra", "up"], env, timeout=60)
        elapsed = time.monotonic() - t0
    finally:
        squatter.close()
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert "redis" in lines[0] and "already in use" in lines[0] and "LEADSCORE_REDIS_PORT" in lines[0]
    assert elapsed < 30
    settings = Settings.load(env)
    assert not any(_pids(settings).values()), "nothing may be left running after a refused start"


async def _produce_and_read(bootstrap: str, topic: str, value: bytes | None) -> list[bytes]:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    if value is not None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(topic, value)
        finally:
            await producer.stop()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=5000)
        return [m.value for msgs in batch.values() for m in msgs]
    finally:
        await consumer.stop()


def test_data_survives_down_and_up_and_down_leaves_nothing_running(tmp_path: Path) -> None:
    import psycopg
    import redis

    env = stack_env(tmp_path / "state")
    assert leadscore(["infra", "up"], env).returncode == 0
    settings = Settings.load(env)
    token = uuid.uuid4().hex
    topic = f"persist-{token[:8]}"
    try:
        with psycopg.connect(settings.pg_dsn()) as conn:
            conn.execute("CREATE TABLE keep (token text)")
            conn.execute("INSERT INTO keep VALUES (%s)", (token,))
        redis.Redis.from_url(settings.redis_url()).set("keep", token)
        assert asyncio.run(_produce_and_read(settings.kafka_bootstrap, topic, token.encode())) == [token.encode()]

        pids = _pids(settings)
        down = leadscore(["infra", "down"], env)
        assert down.returncode == 0
        assert all(pids.values())
        assert [name for name, pid in pids.items() if not _gone(pid)] == []
        assert leadscore(["infra", "status"], env).returncode == 1

        assert leadscore(["infra", "up"], env).returncode == 0
        with psycopg.connect(settings.pg_dsn()) as conn:
            assert conn.execute("SELECT token FROM keep").fetchall() == [(token,)]
        assert redis.Redis.from_url(settings.redis_url()).get("keep") == token.encode()
        assert asyncio.run(_produce_and_read(settings.kafka_bootstrap, topic, None)) == [token.encode()]
    finally:
        pg_data = (settings.state_dir / "postgres").resolve()
        leadscore(["infra", "down", "--purge"], env)
    assert not settings.state_dir.exists() and not pg_data.exists()
