"""The MLflow tracking server with MLflow's own authentication: runs and the registry in PostgreSQL, artifacts and
the users' database in its own folder, the trainer and read-only serving users made by `infra up`."""

from __future__ import annotations

import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from infra.process import ServiceError, spawn
from infra.servers import PythonServer


class MLflowServer(PythonServer):
    """MLflow tracking server: runs and registry in Postgres, artifacts under the state directory."""

    name = "mlflow"
    expect = "mlflow"
    start_timeout = 90.0  # the first start creates MLflow's tables

    def auth_config(self, home: Path) -> Path:
        """MLflow's basic-auth ini (0600): users and permissions in a SQLite file beside it; READ by default, so
        every signed-in user reads and only a run's or model's creator (or admin) changes it."""
        path = home / "basic_auth.ini"
        path.write_text("[mlflow]\ndefault_permission = READ\n"
                        f"database_uri = sqlite:///{home / 'auth.db'}\nadmin_username = admin\n"
                        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
                        # a verified login is cached 30 s: without it each request pays a scrypt hash (training
                        # logs hundreds of requests); a changed password takes effect within that time
                        "auth_cache_ttl_seconds = 30\n")
        os.chmod(path, 0o600)
        return path

    def launch(self) -> int:
        from infra.unprivileged import private_home

        user = self.run_as
        home = private_home(self.settings, self.name, user)  # artifacts and the auth files: the server's own
        artifacts = home / "artifacts"
        artifacts.mkdir(exist_ok=True)
        auth = self.auth_config(home)
        if user is not None:
            for path in (artifacts, auth):
                os.chown(path, user.uid, user.gid)
        workers = self.settings.env.get("LEADSCORE_MLFLOW_WORKERS", "1")
        # the backend URI carries the database password: pass it in the environment, not on the command line
        env = {**os.environ, **self.settings.mlflow_env(), "MLFLOW_BACKEND_STORE_URI": self.settings.mlflow_backend_uri,
               # the GenAI job runner (a dozen huey processes) serves nothing LeadScore uses; opt in to keep it
               "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": self.settings.env.get("MLFLOW_SERVER_ENABLE_JOB_EXECUTION",
                                                                           "false"),
               # MLflow's own authentication: no request without a login (401), alias moves only by their owner
               "MLFLOW_AUTH_CONFIG_PATH": str(auth),
               "MLFLOW_AUTH_ADMIN_PASSWORD": self.settings.secret("mlflow_admin", create=True),
               "MLFLOW_FLASK_SERVER_SECRET_KEY": self.settings.secret("mlflow_flask", create=True),
               "HOME": str(home)}  # its caches in its own folder, not root's
        for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            env.pop(name, None)
        python, env = self.python(env)
        return spawn([python, "-m", "mlflow", "server", "--app-name", "basic-auth", "--host",
                      self.settings.host, "--port", str(self.port), "--workers", workers, "--artifacts-destination",
                      str(artifacts)], self.log, self.pidfile, env=env, run_as=user, cwd=home)

    def ensure_users(self) -> list[str]:
        """Create the trainer and serving users (passwords generated into the secrets) if missing; the new ones."""
        import base64
        import json

        from infra.config import MLFLOW_USERS

        admin = base64.b64encode(f"admin:{self.settings.secret('mlflow_admin')}".encode()).decode()
        base = f"http://{self.settings.host}:{self.port}/api/2.0/mlflow/users"
        made = []
        for role in ("trainer", "serving"):
            username, password = MLFLOW_USERS[role], self.settings.secret(f"mlflow_{role}", create=True)
            ask = urllib.request.Request(f"{base}/get?{urllib.parse.urlencode({'username': username})}",
                                         headers={"Authorization": f"Basic {admin}"})
            try:
                urllib.request.urlopen(ask, timeout=10).close()  # noqa: S310 - our own loopback server
                action, body = "update-password", {"username": username, "password": password}
            except urllib.error.HTTPError as exc:
                if exc.code != 404:
                    raise ServiceError(f"mlflow: cannot check user {username} (HTTP {exc.code}): is the admin "
                                       "password in secrets/mlflow_admin.password the server's?") from None
                action, body = "create", {"username": username, "password": password}
                made.append(username)
            req = urllib.request.Request(f"{base}/{action}", data=json.dumps(body).encode(), method="PATCH"
                                         if action == "update-password" else "POST",
                                         headers={"Authorization": f"Basic {admin}",
                                                  "Content-Type": "application/json"})
            urllib.request.urlopen(req, timeout=10).close()  # noqa: S310
        return made

    def healthy(self) -> bool:
        url = f"http://{self.settings.host}:{self.port}/health"
        with urllib.request.urlopen(url, timeout=1) as resp:  # noqa: S310 - our own loopback server
            return resp.status == 200
