"""The servers LeadScore runs itself: what each needs, how it starts, how we know it really answers."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import struct
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from infra.config import FEAST_PROJECT, REDIS_USERS, Settings
from infra.process import (
    RunAs,
    ServiceError,
    ensure_port_free,
    port_open,
    read_pid,
    spawn,
    stop_pid,
    tail,
)


def package_dir(module: str) -> Path:
    """Directory of an installed package, found without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ServiceError(f"Python package {module!r} is missing: run `bash infra/setup.sh` to install LeadScore")
    return Path(next(iter(spec.submodule_search_locations)))


class Server:
    """A server process LeadScore owns: its port, state folder, PID file and health check."""

    name: str = ""
    expect: str = ""  # a fragment of the command line, so a recycled PID is never mistaken for ours
    stop_signal: int = signal.SIGTERM
    start_timeout: float = 30.0

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.home = settings.state_dir / self.name

    @property
    def port(self) -> int:
        return getattr(self.settings, f"{self.name}_port")

    @property
    def port_env(self) -> str:
        return f"LEADSCORE_{self.name.upper()}_PORT"

    @property
    def pidfile(self) -> Path:
        return self.home / f"{self.name}.pid"

    @property
    def log(self) -> Path:
        return self.home / f"{self.name}.log"

    @property
    def run_as(self) -> RunAs | None:
        return None

    def pid(self) -> int | None:
        return read_pid(self.pidfile, self.expect)

    def install(self) -> None:
        """Install what the server needs if it is missing (idempotent)."""

    def prepare(self) -> None:
        """Create the state folder and configuration (idempotent)."""
        self.home.mkdir(parents=True, exist_ok=True)

    def launch(self) -> int:
        """Start the process; return its PID."""
        raise NotImplementedError

    def healthy(self) -> bool:
        raise NotImplementedError

    def start(self) -> int | None:
        """Start unless already running; the new process's PID, or None if one was running."""
        if self.pid() is not None:
            return None
        ensure_port_free(self.name, self.settings.host, self.port, self.port_env)
        self.install()
        self.prepare()
        return self.launch()

    def stop(self) -> bool:
        """Stop the process our PID file names; True if one was running."""
        pid = self.pid()
        if pid is None:
            self.pidfile.unlink(missing_ok=True)
            return False
        stop_pid(pid, self.stop_signal, group=self.stop_group)
        self.pidfile.unlink(missing_ok=True)
        self._wait_port_released()
        return True

    def _wait_port_released(self, timeout: float = 10.0) -> None:
        """After the process is gone its port can stay held a moment (a child exiting after its parent, as the
        embedded broker's can): wait for it, so a restart right after `stop` finds it free."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                ensure_port_free(self.name, self.settings.host, self.port, self.port_env)
                return
            except ServiceError:
                time.sleep(0.1)

    stop_group = True

    def failure(self, why: str) -> ServiceError:
        """One line: which server, why, the last log lines, and what to do."""
        return ServiceError(
            f"{self.name} did not start on {self.settings.host}:{self.port}: {why}. "
            f"Last log lines: {tail(self.log, 3)}. "
            f"See `leadscore infra logs {self.name}`, or free the port / set {self.port_env}."
        )


# What the scoring service reads (as the service user it cannot read the secrets directory): its PostgreSQL logins
# (scoring, privacy routes, console), Redis' read-only user and the pipelines' user (erasure deletes online rows),
# MLflow's read-only user and the trainer (erasure rewrites run artifacts), and its own keys. Not the owner's logins.
SERVICE_SECRETS = ("pg_serving", "pg_privacy", "pg_console", "redis_serving", "redis", "mlflow_serving",
                   "mlflow_trainer", "metrics_token", "jwt_signing", "api_key_pepper", "privacy_token",
                   "consent_ledger", "erasure_receipt")


class PythonServer(Server):
    """A server in LeadScore's own Python: as root, run as the service user with an interpreter it can start
    (infra/unprivileged.py `python_for`), or as we are where none can be made (its log says why)."""

    _interpreter = None

    @property
    def interpreter(self):  # noqa: ANN201 - infra.unprivileged.Interpreter
        if self._interpreter is None:
            from infra.unprivileged import python_for, service_user

            self._interpreter = python_for(service_user(self.settings))
        return self._interpreter

    @property
    def run_as(self) -> RunAs | None:
        from infra.unprivileged import service_user

        user = service_user(self.settings)
        return None if user is None or self.interpreter.why_not else user

    def python(self, env: dict[str, str]) -> tuple[str, dict[str, str]]:
        """The interpreter to start and `env` with what it needs; says in the log when it runs as root."""
        interp = self.interpreter
        if interp.why_not and os.geteuid() == 0:
            self.log.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log, "a") as out:
                out.write(f"leadscore: {self.name} runs as root: {interp.why_not}\n")
        # a Prometheus multiprocess folder inherited from the caller (Feast sets one on import) is the caller's:
        # a server as another user cannot write it, and its metrics are not the caller's to share
        env = {k: v for k, v in env.items() if not k.upper().startswith("PROMETHEUS_MULTIPROC")}
        return str(interp.python), {**env, **interp.env}


class Redis(Server):
    """Redis 7 from Debian's package, AOF persistence, ACL users with passwords from the state directory:

    - `default` (the pipelines: materialization, streams, erasure, dataset drop): every command but the
      dangerous ones (CONFIG, FLUSHALL, KEYS, DEBUG, SHUTDOWN, ACL, MONITOR, ...), BGREWRITEAOF kept for erasure;
    - `leadscore-serving` (the scoring service): read-only, on the feature store's keys only (`*<project>`);
    - `leadscore-admin` (people): everything.
    """

    name = "redis"
    expect = "redis-server"

    def binary(self) -> str:
        return self.settings.env.get("LEADSCORE_REDIS_SERVER") or shutil.which("redis-server") or ""

    def install(self) -> None:
        if self.binary():
            return
        if os.geteuid() != 0 or not shutil.which("apt-get"):
            raise ServiceError("redis: redis-server is not installed; run `sudo apt-get install -y redis-server` "
                               "(or set LEADSCORE_REDIS_SERVER to its path)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "redis-server"]
        if subprocess.run(cmd, env=env, capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
            done = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                raise ServiceError(f"redis: apt-get could not install redis-server: {done.stderr.strip()[-200:]}")

    @property
    def run_as(self) -> RunAs | None:
        from infra.unprivileged import service_user

        return service_user(self.settings)  # not root when we are (infra/unprivileged.py)

    def prepare(self) -> None:
        from infra.unprivileged import private_home

        user = self.run_as
        home = private_home(self.settings, self.name, user)
        conf = home / "redis.conf"
        secret = self.settings.secret
        text = "\n".join([
            f"bind {self.settings.host}", f"port {self.port}", "protected-mode yes", f'dir "{home}"',
            "appendonly yes", "appendfsync everysec", "daemonize no", 'logfile ""',
            f"user default on >{secret('redis', create=True)} ~* &* +@all -@dangerous +bgrewriteaof",
            f"user {REDIS_USERS['serving']} on >{secret('redis_serving', create=True)} resetchannels -@all "
            f"+@read +@connection +ping -@dangerous %R~*{FEAST_PROJECT}",
            f"user {REDIS_USERS['admin']} on >{secret('redis_admin', create=True)} ~* &* +@all", "",
        ])
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        if user is not None:
            os.chown(conf, user.uid, user.gid)

    def launch(self) -> int:
        return spawn([self.binary(), str(self.home.resolve() / "redis.conf")], self.log, self.pidfile,
                     run_as=self.run_as)

    def healthy(self) -> bool:
        import redis

        client = redis.Redis.from_url(self.settings.redis_url(), socket_timeout=1, socket_connect_timeout=1)
        try:
            return bool(client.ping())
        finally:
            client.close()


class Broker(Server):
    """The Kafka-protocol broker from the noida-db wheel; clients speak plain Kafka to it."""

    name = "kafka"
    expect = "noida-db"

    def binary(self) -> Path:
        path = package_dir("noida_db") / "noida-db"
        if not os.access(path, os.X_OK):
            path.chmod(0o755)
        return path

    @property
    def run_as(self) -> RunAs | None:
        from infra.unprivileged import service_user

        return service_user(self.settings)

    def prepare(self) -> None:
        from infra.unprivileged import private_home

        user = self.run_as
        data = self.home / "data"
        if user is None:
            data.mkdir(parents=True, exist_ok=True)
            return
        home = private_home(self.settings, self.name, user)
        (home / "data").mkdir(mode=0o700, exist_ok=True)
        os.chown(home / "data", user.uid, user.gid)

    def launch(self) -> int:
        from infra.unprivileged import reachable_binary

        binary = reachable_binary(self.binary(), self.run_as, "noida-db")
        return spawn([str(binary), "start", "--only", "kafka", "--kafka-port", str(self.port),
                      "--host", self.settings.host, "--data-dir", str(self.home.resolve() / "data")], self.log,
                     self.pidfile, run_as=self.run_as)

    def healthy(self) -> bool:
        return kafka_metadata_brokers(self.settings.host, self.port) >= 1


def kafka_metadata_brokers(host: str, port: int, timeout: float = 1.0) -> int:
    """Send a Kafka Metadata (v0) request and return how many brokers the answer lists."""
    client_id = b"leadscore-health"
    body = struct.pack(">hhih", 3, 0, 7, len(client_id)) + client_id + struct.pack(">i", 0)
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(struct.pack(">i", len(body)) + body)
        header = _recv_exact(sock, 4)
        payload = _recv_exact(sock, struct.unpack(">i", header)[0])
    correlation, n_brokers = struct.unpack(">ii", payload[:8])
    if correlation != 7:
        raise ServiceError("kafka: metadata answer with a wrong correlation id")
    return n_brokers


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed mid-answer")
        buf += chunk
    return buf


class ServingServer(PythonServer):
    """The BentoML scoring service (serving/service.py) over `models:/<model>@champion`; started once one exists."""

    name = "serving"
    expect = "serving.service:LeadScorer"
    start_timeout = 120.0  # imports BentoML, MLflow and Feast, then loads the champion

    def launch(self) -> int:
        from infra.config import REPO_ROOT
        from infra.unprivileged import private_home

        user = self.run_as
        home = private_home(self.settings, self.name, user)  # BentoML's home, the log: the service's own
        # BentoML gives its workers their Prometheus directory: one inherited from a process that imported Feast
        # (which sets its own) would split the service's metrics from the /metrics endpoint
        env = {k: v for k, v in os.environ.items() if not k.startswith("PROMETHEUS_")}
        env.update({**self.settings.mlflow_env("serving"), "BENTOML_DO_NOT_TRACK": "True",
                    "LEADSCORE_STATE_DIR": str(self.settings.state_dir), "OMP_NUM_THREADS": "1",
                    "HOME": str(home), "BENTOML_HOME": str(home / "bentoml")})
        if user is not None:  # the state directory is root's alone: the service gets its own secrets, no others
            env.update(self.secrets_env())
        python, env = self.python(env)
        return spawn([python, "-m", "bentoml", "serve", "serving.service:LeadScorer", "--host",
                      self.settings.host, "--port", str(self.port), "--working-dir", str(REPO_ROOT)],
                     self.log, self.pidfile, env=env, run_as=user, cwd=REPO_ROOT)

    def secrets_env(self) -> dict[str, str]:
        """The secrets the scoring service uses (SERVICE_SECRETS), as LEADSCORE_<NAME>_PASSWORD: made first where
        missing, so the service never has to write the secrets directory."""
        return {f"LEADSCORE_{name.upper()}_PASSWORD": self.settings.secret(name, create=True)
                for name in SERVICE_SECRETS}

    def healthy(self) -> bool:
        with urllib.request.urlopen(f"http://{self.settings.host}:{self.port}/healthz", timeout=1) as resp:  # noqa: S310
            return resp.status == 200

    def champion_exists(self) -> bool:
        """True if the registry has `<model>@champion` (asked over MLflow's REST API: no MLflow import)."""
        query = urllib.parse.urlencode({"name": self.settings.model_name, "alias": "champion"})
        import base64

        login = self.settings.mlflow_login("serving")
        headers = {"Authorization": "Basic " + base64.b64encode(":".join(login).encode()).decode()} if login else {}
        url = urllib.request.Request(f"{self.settings.tracking_uri}/api/2.0/mlflow/registered-models/alias?{query}",
                                     headers=headers)
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - our own tracking server
                return resp.status == 200
        except urllib.error.HTTPError:
            return False


def answers(server: Server) -> bool:
    """Health check that never raises."""
    try:
        return port_open(server.settings.host, server.port) and server.healthy()
    except Exception:  # noqa: BLE001
        return False
