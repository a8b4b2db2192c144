"""Bring the whole stack up, down, and report on it: the plain functions behind `leadscore infra`."""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass

from infra.config import Settings
from infra.migrate import apply_migrations
from infra.mlflow_server import MLflowServer
from infra.monitor_servers import EvidentlyUI, Prometheus
from infra.postgres import Postgres
from infra.process import ServiceError, ensure_port_free, pid_alive, wait_until
from infra.roles import ensure_login_roles
from infra.servers import Broker, Redis, Server, ServingServer, answers


def servers(settings: Settings) -> list[Server]:
    """Every server in start order (MLflow needs Postgres; the monitoring servers need nothing)."""
    return [Postgres(settings), Redis(settings), Broker(settings), Prometheus(settings), EvidentlyUI(settings),
            MLflowServer(settings)]


def optional_servers(settings: Settings) -> list[Server]:
    """Servers `up` starts only when there is something to serve (the scoring service needs a champion)."""
    return [ServingServer(settings)]


def by_name(settings: Settings, name: str) -> Server:
    known = {s.name: s for s in [*servers(settings), *optional_servers(settings)]}
    if name not in known:
        raise ServiceError(f"unknown service {name!r}: choose one of {', '.join(known)}")
    return known[name]


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    host: str
    port: int
    pid: int | None
    healthy: bool

    @property
    def state(self) -> str:
        if self.pid is None:
            return "stopped"
        return "healthy" if self.healthy else "unhealthy"


def _wait_healthy(server: Server, started_at: float, pid: int | None) -> None:
    pid = pid or server.pid()
    alive = (lambda: pid_alive(pid)) if pid else (lambda: server.pid() is not None)
    try:
        remaining = max(1.0, server.start_timeout - (time.monotonic() - started_at))
        wait_until(lambda: answers(server), remaining, server.name, alive=alive)
    except ServiceError as exc:
        reason = "the process exited during start-up" if "exited" in str(exc) else f"no answer within " \
            f"{server.start_timeout:.0f} s"
        raise server.failure(reason) from None


def up(settings: Settings, say: Callable[[str], None] = print) -> list[ServiceStatus]:
    """Install what is missing, start every server not already running, wait until each really answers."""
    os.umask(0o077)  # every file the servers and this process write: 0600, every folder 0700
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(settings.state_dir, 0o700)
    settings.secret("pg", create=True)
    settings.secret("redis", create=True)
    settings.secret("evidently", create=True)
    *independent, mlflow = servers(settings)
    for server in servers(settings):  # fail before starting anything if a port we need is taken
        if server.pid() is None:
            ensure_port_free(server.name, settings.host, server.port, server.port_env)
    started: dict[str, tuple[float, int | None]] = {}
    for server in independent:
        t0 = time.monotonic()
        pid = server.start()
        started[server.name] = (t0, pid)
        if pid:
            say(f"starting {server.name} on {settings.host}:{server.port}")
    for server in independent:
        _wait_healthy(server, *started[server.name])
    independent[0].ensure_databases()
    for name in apply_migrations(settings):
        say(f"applied migration {name}")
    ensure_login_roles(settings)
    t0 = time.monotonic()
    pid = mlflow.start()
    if pid:
        say(f"starting mlflow on {settings.host}:{mlflow.port}")
    _wait_healthy(mlflow, t0, pid)
    for user in mlflow.ensure_users():
        say(f"mlflow: created user {user} (password in {settings.secrets_dir}/)")
    start_serving(settings, say)
    return status(settings)


def start_serving(settings: Settings, say: Callable[[str], None] = print) -> bool:
    """Start the scoring service if the registry has a champion and it is not running; True if it runs now."""
    serving = ServingServer(settings)
    if serving.pid() is None:
        if not serving.champion_exists():
            say(f"serving: not started, no {settings.model_name}@champion yet (leadscore train, then promote)")
            return False
        ensure_port_free(serving.name, settings.host, serving.port, serving.port_env)
        t0 = time.monotonic()
        pid = serving.start()
        say(f"starting serving on {settings.host}:{serving.port} ({settings.model_name}@champion)")
        _wait_healthy(serving, t0, pid)
    return True


def down(settings: Settings, say: Callable[[str], None] = print) -> list[str]:
    """Stop exactly the processes our PID files name, in reverse start order."""
    stopped = []
    for server in [*optional_servers(settings), *reversed(servers(settings))]:
        if server.stop():
            stopped.append(server.name)
            say(f"stopped {server.name}")
    return stopped


def purge(settings: Settings) -> None:
    """Delete the state directory and whatever it links to (relocated PostgreSQL data): all data is lost."""
    if any(server.pid() for server in [*servers(settings), *optional_servers(settings)]):
        raise ServiceError("refusing to delete data while servers run: run `leadscore infra down` first")
    if settings.state_dir.is_dir():
        for entry in settings.state_dir.iterdir():
            if entry.is_symlink():
                target = entry.resolve()
                shutil.rmtree(target, ignore_errors=True)
                with contextlib.suppress(OSError):
                    target.parent.rmdir()  # the per-state-dir folder under /var/lib/leadscore, if now empty
                entry.unlink()
        shutil.rmtree(settings.state_dir, ignore_errors=True)


def status(settings: Settings) -> list[ServiceStatus]:
    """Every server, and each optional one that is running."""
    rows, optional = [], optional_servers(settings)
    for server in [*servers(settings), *optional]:
        pid = server.pid()
        if pid is None and server in optional:
            continue
        rows.append(ServiceStatus(server.name, settings.host, server.port, pid, pid is not None and answers(server)))
    return rows
