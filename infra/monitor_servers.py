"""The monitoring servers `infra up` runs: Prometheus (Debian's package) and the Evidently UI (the evidently wheel).

Prometheus's configuration is generated into its state folder on every start: it scrapes the scoring service, the
monitor (`leadscore monitor watch`) and every stream worker that registered itself in `targets/` (file service
discovery), and evaluates the alert rules of monitoring/prometheus/, copied beside it. As root it runs as the
`prometheus` user the package creates, with its folder moved where that user can reach it (as PostgreSQL's is).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import urllib.request
from pathlib import Path

from infra.config import REPO_ROOT, Settings
from infra.process import RunAs, ServiceError, run, spawn
from infra.servers import PythonServer, Server

RULES_DIR = REPO_ROOT / "monitoring" / "prometheus"
RELOCATED_ROOT = Path("/var/lib/leadscore")


def apt_install(package: str, what: str) -> None:
    """Install a Debian package as root (apt-get update once if the first try fails), or say how to."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise ServiceError(f"{what} is not installed; run `sudo apt-get install -y --no-install-recommends {package}`")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", package]
    if subprocess.run(cmd, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise ServiceError(f"apt-get could not install {package}: {done.stderr.strip()[-200:]}")


class Prometheus(Server):
    """Prometheus 2 scraping LeadScore's own /metrics endpoints and evaluating its alert rules."""

    name = "prometheus"
    expect = "prometheus"

    def binary(self) -> str:
        return self.settings.env.get("LEADSCORE_PROMETHEUS_BIN") or shutil.which("prometheus") or \
            ("/usr/bin/prometheus" if os.access("/usr/bin/prometheus", os.X_OK) else "")

    @property
    def run_as(self) -> RunAs | None:
        if os.geteuid() != 0:
            return None
        try:
            return RunAs.lookup("prometheus")
        except KeyError:  # a binary not from Debian's package: run as we are
            return None

    @property
    def pidfile(self) -> Path:
        return self.settings.state_dir / "prometheus.pid"  # beside its folder, which may live elsewhere

    @property
    def log(self) -> Path:
        return self.settings.state_dir / "logs" / "prometheus.log"

    @property
    def targets_dir(self) -> Path:
        return self.home / "targets"

    def install(self) -> None:
        if not self.binary():
            apt_install("prometheus", "prometheus")

    def prepare(self) -> None:
        user = self.run_as
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        if not self.home.exists() and not self.home.is_symlink():
            if user is not None and run(["test", "-x", str(self.settings.state_dir)], run_as=user).returncode != 0:
                key = hashlib.sha1(str(self.settings.state_dir.resolve()).encode()).hexdigest()[:12]
                target = RELOCATED_ROOT / key / "prometheus"
                target.mkdir(parents=True, exist_ok=True)
                os.chmod(target.parent.parent, 0o755)
                os.chmod(target.parent, 0o755)
                self.home.symlink_to(target, target_is_directory=True)
            else:
                self.home.mkdir()
        home = self.home.resolve()
        for sub in ("data", "rules", "targets"):
            (home / sub).mkdir(exist_ok=True)
        for rules in RULES_DIR.glob("*.yml"):
            if not rules.name.endswith("_test.yml"):
                shutil.copyfile(rules, home / "rules" / rules.name)
                os.chmod(home / "rules" / rules.name, 0o600)
        # the scoring service's /metrics asks for the metrics token: Prometheus reads its own copy (0600)
        token = home / "secrets" / "metrics_token"
        token.parent.mkdir(mode=0o700, exist_ok=True)
        token.unlink(missing_ok=True)
        fd = os.open(token, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(self.settings.secret("metrics_token", create=True))
        (home / "prometheus.yml").write_text(json.dumps(self.config(), indent=1))  # JSON is YAML
        if user is not None:
            for path in (home, *home.rglob("*")):
                os.chown(path, user.uid, user.gid)

    def config(self) -> dict:
        every = f"{float(self.settings.env.get('LEADSCORE_PROMETHEUS_SCRAPE_S', '15')):g}s"
        host, home = self.settings.host, self.home.resolve()
        return {
            "global": {"scrape_interval": every, "evaluation_interval": every},
            "rule_files": [str(home / "rules" / "*.yml")],
            "scrape_configs": [
                {"job_name": "leadscore-serving", "static_configs": [
                    {"targets": [f"{host}:{self.settings.serving_port}"]}],
                 "authorization": {"type": "Bearer", "credentials_file": str(home / "secrets" / "metrics_token")}},
                {"job_name": "leadscore-monitor", "static_configs": [
                    {"targets": [f"{host}:{self.settings.monitor_port}"]}]},
                {"job_name": "leadscore-streams", "file_sd_configs": [
                    {"files": [str(home / "targets" / "*.json")], "refresh_interval": every}]},
            ],
        }

    def launch(self) -> int:
        home = self.home.resolve()
        return spawn([self.binary(), f"--config.file={home / 'prometheus.yml'}",
                      f"--storage.tsdb.path={home / 'data'}", f"--web.listen-address={self.settings.host}:{self.port}",
                      "--storage.tsdb.retention.time=30d", "--web.enable-lifecycle"],
                     self.log, self.pidfile, run_as=self.run_as, cwd=home)

    def healthy(self) -> bool:
        with urllib.request.urlopen(f"{self.settings.prometheus_url}/-/ready", timeout=1) as resp:  # noqa: S310
            return resp.status == 200


def register_target(settings: Settings, name: str, port: int, labels: dict[str, str] | None = None) -> Path | None:
    """Tell Prometheus (file service discovery) to scrape a process's /metrics; returns the file to delete at exit,
    or None when Prometheus was never set up in this state directory."""
    folder = settings.state_dir / "prometheus" / "targets"
    if not folder.is_dir():
        return None
    path = folder / f"{name}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps([{"targets": [f"{settings.host}:{port}"], "labels": labels or {}}]))
    os.chmod(tmp, 0o600)
    owner = folder.resolve().stat()
    if os.geteuid() == 0 and owner.st_uid != 0:  # Prometheus runs as its own user: the file is its to read
        os.chown(tmp, owner.st_uid, owner.st_gid)
    tmp.replace(path)
    return path


class EvidentlyUI(PythonServer):
    """The Evidently UI over the monitor's workspace: a project per model, a drift snapshot per monitor cycle."""

    name = "evidently"
    expect = "evidently"
    start_timeout = 60.0  # imports the whole of Evidently

    @property
    def workspace(self) -> Path:
        return self.home / "workspace"

    def launch(self) -> int:
        from infra.unprivileged import private_home

        user = self.run_as
        home = private_home(self.settings, self.name, user)  # the workspace: the UI's own (the monitor posts to it)
        (home / "workspace").mkdir(exist_ok=True)
        if user is not None:
            os.chown(home / "workspace", user.uid, user.gid)
        env = {**os.environ, "DO_NOT_TRACK": "true",  # Evidently's telemetry posts to a public address otherwise
               "EVIDENTLY_SECRET": self.settings.secret("evidently", create=True), "HOME": str(home)}
        python, env = self.python(env)
        return spawn([python, "-m", "evidently.cli", "ui", "--workspace", str(home / "workspace"), "--host",
                      self.settings.host, "--port", str(self.port)], self.log, self.pidfile, env=env, cwd=home,
                     run_as=user)

    def healthy(self) -> bool:
        with urllib.request.urlopen(f"{self.settings.evidently_url}/api/version", timeout=2) as resp:  # noqa: S310
            return resp.status == 200
