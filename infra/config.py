"""One settings object for every component: state directory, ports, DSNs, MLflow names.

Values come from the process environment, then `mlflow.env` (the environment wins), then defaults. Nothing is
read or set at import time: call `Settings.load()` where the configuration is needed.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

REPO_ROOT = Path(__file__).resolve().parent.parent
_INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

# the registry's users (MLflow basic auth, infra/servers.py): passwords in secrets/mlflow_<role>.password
MLFLOW_USERS = {"admin": "admin", "trainer": "leadscore-trainer", "serving": "leadscore-serving"}
# Redis ACL users besides `default` (infra/servers.py): passwords in secrets/redis_<role>.password
REDIS_USERS = {"serving": "leadscore-serving", "admin": "leadscore-admin"}
# PostgreSQL login roles per component besides the owner (infra/roles.py; grants in infra/migrations/0014_*):
# passwords in secrets/pg_<component>.password
PG_ROLES = {"serving": "leadscore_serving", "mlflow": "leadscore_mlflow", "streams": "leadscore_streams",
            "monitor": "leadscore_monitor", "materialize": "leadscore_materialize", "console": "leadscore_console",
            "privacy": "leadscore_privacy", "train": "leadscore_train",
            "ingest": "leadscore_ingest"}
REDIS_SOCKET_TIMEOUT_S = 20  # the pipelines' Redis reads and writes (a pipelined batch of 20,000 rows takes < 1 s)
FEAST_PROJECT = "leadscore"  # feature_repo/feature_store.yaml: every online key ends with it
KAFKA_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
KAFKA_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
DEFAULT_PORTS = {"postgres": 15432, "redis": 16379, "kafka": 19092, "mlflow": 15000, "serving": 13000,
                 "prometheus": 19090, "evidently": 18001, "monitor": 19101}


class ConfigError(RuntimeError):
    """A configuration problem the user must fix; the message says how."""


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a dotenv file without touching os.environ (python-dotenv, imported lazily)."""
    if not path.is_file():
        return {}
    from dotenv import dotenv_values

    return {k: v for k, v in dotenv_values(path, interpolate=False).items() if v is not None}


def _expand(value: str, scope: Mapping[str, str]) -> str:
    """Expand ${VAR} and ${VAR:-default} from `scope`."""
    return _INTERPOLATION.sub(lambda m: scope.get(m.group(1)) or (m.group(2) or ""), value)


@dataclass(frozen=True)
class Settings:
    """Where LeadScore's servers live and how every component reaches them."""

    state_dir: Path
    host: str
    pg_host: str
    redis_host: str
    postgres_port: int
    redis_port: int
    kafka_port: int
    mlflow_port: int
    serving_port: int
    prometheus_port: int
    evidently_port: int
    monitor_port: int  # `leadscore monitor watch` serves its /metrics here
    pg_user: str
    pg_db: str
    mlflow_db: str
    service_user: str
    tracking_uri: str
    experiment_name: str
    model_name: str
    kafka_bootstrap: str
    env: Mapping[str, str]

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, env_file: Path | None = None) -> Settings:
        """Build settings from `environ` (default os.environ) over `env_file` (default ./mlflow.env).

        Also sets this process's umask to 077: whatever a LeadScore process writes next (state, logs, exports, MLflow
        artifacts, the servers it starts) is readable by its own user only (0600 files, 0700 folders)."""
        os.umask(0o077)
        environ = dict(os.environ if environ is None else environ)
        if env_file is None:
            cwd_env = Path.cwd() / "mlflow.env"
            env_file = cwd_env if cwd_env.is_file() else REPO_ROOT / "mlflow.env"
        scope = {**read_env_file(env_file), **environ}
        scope = {k: _expand(v, scope) for k, v in scope.items()}

        def port(name: str) -> int:
            key = f"LEADSCORE_{name.upper()}_PORT"
            raw = scope.get(key, str(DEFAULT_PORTS[name]))
            if not raw.isdigit() or not 0 < int(raw) < 65536:
                raise ConfigError(f"{key}={raw!r} is not a TCP port: set it to a number between 1 and 65535")
            return int(raw)

        host = scope.get("LEADSCORE_HOST", "127.0.0.1")  # where our servers bind and are reached
        ports = {name: port(name) for name in DEFAULT_PORTS}
        state_dir = Path(scope.get("LEADSCORE_STATE_DIR", ".leadscore")).expanduser()
        if not state_dir.is_absolute():
            state_dir = Path.cwd() / state_dir
        return cls(
            state_dir=state_dir,
            host=host,
            pg_host=scope.get("LEADSCORE_PG_HOST", host),
            redis_host=scope.get("LEADSCORE_REDIS_HOST", host),
            postgres_port=ports["postgres"],
            redis_port=ports["redis"],
            kafka_port=ports["kafka"],
            mlflow_port=ports["mlflow"],
            serving_port=ports["serving"],
            prometheus_port=ports["prometheus"],
            evidently_port=ports["evidently"],
            monitor_port=ports["monitor"],
            pg_user=scope.get("LEADSCORE_PG_USER", "leadscore"),
            pg_db=scope.get("LEADSCORE_PG_DB", "leadscore"),
            mlflow_db=scope.get("LEADSCORE_MLFLOW_DB", "mlflow"),
            service_user=scope.get("LEADSCORE_SERVICE_USER", "leadscore"),
            tracking_uri=scope.get("MLFLOW_TRACKING_URI") or f"http://{host}:{ports['mlflow']}",
            experiment_name=scope.get("MLFLOW_EXPERIMENT_NAME", "leadscore"),
            model_name=scope.get("LEADSCORE_MODEL_NAME", "lead-scorer"),
            kafka_bootstrap=scope.get("KAFKA_BOOTSTRAP_SERVERS") or f"{host}:{ports['kafka']}",
            env=scope,
        )

    # --- secrets: generated once into the state directory, mode 0600, never in the repository ---
    @property
    def secrets_dir(self) -> Path:
        return self.state_dir / "secrets"

    def secret(self, name: str, create: bool = False) -> str:
        """Return secret `name` from LEADSCORE_<NAME>_PASSWORD or the state directory, generating it if asked."""
        override = self.env.get(f"LEADSCORE_{name.upper()}_PASSWORD")
        if override:
            return override
        path = self.secrets_dir / f"{name}.password"
        if path.is_file():
            return path.read_text().strip()
        if not create:
            raise ConfigError(
                f"no {name} password in {self.secrets_dir}: run `leadscore infra up` first "
                f"(or set LEADSCORE_{name.upper()}_PASSWORD)"
            )
        self.secrets_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.secrets_dir, 0o700)
        value = secrets.token_urlsafe(24)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process (a second service worker) made it first
            time.sleep(0.05)
            return path.read_text().strip()
        with os.fdopen(fd, "w") as fh:
            fh.write(value + "\n")
        return value

    # --- derived addresses ---
    def pg_dsn(self, database: str | None = None, role: str | None = None) -> str:
        """libpq DSN for psycopg: as the owner, or as a component's login role (`serving`: PG_ROLES)."""
        user, password = self.pg_login(role)
        return (f"postgresql://{user}:{quote(password, safe='')}@{self.pg_host}:{self.postgres_port}/"
                f"{database or self.pg_db}")

    def pg_login(self, role: str | None = None) -> tuple[str, str]:
        """(user, password) of the owner (None) or of a component's role."""
        if role is None:
            return self.pg_user, self.secret("pg")
        return PG_ROLES[role], self.secret(f"pg_{role}")

    def sqlalchemy_url(self, database: str | None = None, role: str | None = None) -> str:
        """SQLAlchemy URL (psycopg 3 driver), as MLflow and Feast's SQL registry want it."""
        return self.pg_dsn(database, role).replace("postgresql://", "postgresql+psycopg://", 1)

    @property
    def mlflow_backend_uri(self) -> str:
        """MLflow's database as its own role, which owns that database and reaches no other (infra/roles.py)."""
        return self.sqlalchemy_url(self.mlflow_db, role="mlflow")

    def redis_url(self, user: str | None = None) -> str:
        """The online store's URL as the pipelines' `default` user, or as `serving` (read-only) or `admin`."""
        if user is None:
            return f"redis://:{quote(self.secret('redis'), safe='')}@{self.redis_host}:{self.redis_port}/0"
        password = quote(self.secret(f"redis_{user}"), safe="")
        return f"redis://{REDIS_USERS[user]}:{password}@{self.redis_host}:{self.redis_port}/0"

    @property
    def evidently_url(self) -> str:
        return self.env.get("LEADSCORE_EVIDENTLY_URL") or f"http://{self.host}:{self.evidently_port}"

    @property
    def prometheus_url(self) -> str:
        return self.env.get("LEADSCORE_PROMETHEUS_URL") or f"http://{self.host}:{self.prometheus_port}"

    def event_limits(self):  # noqa: ANN201 - pipelines.streams.parse.EventLimits
        """How far from now a stream event's time may be: LEADSCORE_EVENT_MAX_AHEAD_S (300) seconds ahead and
        LEADSCORE_EVENT_MAX_AGE_DAYS (730) days back; later or earlier events are dead letters."""
        from datetime import timedelta

        from pipelines.streams.parse import EventLimits

        try:
            ahead = float(self.env.get("LEADSCORE_EVENT_MAX_AHEAD_S", "300"))
            age = float(self.env.get("LEADSCORE_EVENT_MAX_AGE_DAYS", "730"))
        except ValueError:
            raise ConfigError("LEADSCORE_EVENT_MAX_AHEAD_S and LEADSCORE_EVENT_MAX_AGE_DAYS must be numbers") from None
        if ahead < 0 or age <= 0:
            raise ConfigError("LEADSCORE_EVENT_MAX_AHEAD_S must be >= 0 and LEADSCORE_EVENT_MAX_AGE_DAYS > 0")
        return EventLimits(timedelta(seconds=ahead), timedelta(days=age))

    def kafka_options(self) -> dict[str, Any]:
        """aiokafka keyword arguments for the broker's security: KAFKA_SECURITY_PROTOCOL (PLAINTEXT, SSL,
        SASL_PLAINTEXT, SASL_SSL), KAFKA_SASL_MECHANISM (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) with
        KAFKA_SASL_USERNAME / KAFKA_SASL_PASSWORD, and KAFKA_SSL_CAFILE / _CERTFILE / _KEYFILE for TLS."""
        protocol = self.env.get("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT").strip().upper()
        if protocol not in KAFKA_PROTOCOLS:
            raise ConfigError(f"KAFKA_SECURITY_PROTOCOL={protocol!r} is not one of {', '.join(KAFKA_PROTOCOLS)}")
        options: dict[str, Any] = {"security_protocol": protocol}
        if protocol.startswith("SASL_"):
            mechanism = self.env.get("KAFKA_SASL_MECHANISM", "PLAIN").strip().upper()
            if mechanism not in KAFKA_SASL_MECHANISMS:
                raise ConfigError(f"KAFKA_SASL_MECHANISM={mechanism!r} is not one of "
                                  f"{', '.join(KAFKA_SASL_MECHANISMS)}")
            user, password = self.env.get("KAFKA_SASL_USERNAME"), self.env.get("KAFKA_SASL_PASSWORD")
            if not user or not password:
                raise ConfigError(f"KAFKA_SECURITY_PROTOCOL={protocol} needs KAFKA_SASL_USERNAME and "
                                  "KAFKA_SASL_PASSWORD")
            options.update(sasl_mechanism=mechanism, sasl_plain_username=user, sasl_plain_password=password)
        if protocol.endswith("SSL"):
            from aiokafka.helpers import create_ssl_context

            files = {k: self.env.get(f"KAFKA_SSL_{k.upper()}") for k in ("cafile", "certfile", "keyfile")}
            for name, path in files.items():
                if path and not Path(path).is_file():
                    raise ConfigError(f"KAFKA_SSL_{name.upper()}={path}: no such file")
            options["ssl_context"] = create_ssl_context(**{k: v for k, v in files.items() if v},
                                                        password=self.env.get("KAFKA_SSL_KEY_PASSWORD"))
        return options

    def faust_credentials(self):  # noqa: ANN201 - faust.SASLCredentials | faust.SSLCredentials | None
        """The same settings as Faust's `broker_credentials` (the stream workers)."""
        import faust

        options = self.kafka_options()
        if options["security_protocol"].startswith("SASL_"):
            return faust.SASLCredentials(username=options["sasl_plain_username"],
                                         password=options["sasl_plain_password"],
                                         ssl_context=options.get("ssl_context"), mechanism=options["sasl_mechanism"])
        return faust.SSLCredentials(options["ssl_context"]) if "ssl_context" in options else None

    def feast_env(self, role: str | None = None) -> dict[str, str]:
        """The variables feature_repo/feature_store.yaml expands (Feast reads ${VAR} from the environment), with
        PostgreSQL as the owner or as a component's role (the scoring service reads the registry as `serving`)."""
        user, password = self.pg_login(role)
        return {
            "LEADSCORE_PG_HOST": self.pg_host,
            "LEADSCORE_POSTGRES_PORT": str(self.postgres_port),
            "LEADSCORE_PG_DB": self.pg_db,
            "LEADSCORE_PG_USER": user,
            "LEADSCORE_PG_PASSWORD": password,
            "LEADSCORE_FEAST_REGISTRY_URL": self.sqlalchemy_url(role=role),
            # socket timeouts: a Redis that stops answering on an open connection (a restart whose old socket was
            # never closed) is a TimeoutError the pipelines retry, never a read that waits forever
            "LEADSCORE_REDIS_CONNECTION": f"{self.redis_host}:{self.redis_port},{self._redis_login(role)},"
                                          f"socket_timeout={REDIS_SOCKET_TIMEOUT_S},socket_connect_timeout=5",
        }

    def _redis_login(self, role: str | None) -> str:
        """Feast's connection-string credentials: the pipelines' `default` user, or the serving role's read-only
        Redis user."""
        if role == "serving":
            return f"username={REDIS_USERS['serving']},password={self.secret('redis_serving')}"
        return f"password={self.secret('redis')}"

    def mlflow_login(self, user: str = "trainer") -> tuple[str, str] | None:
        """(username, password) of one of the registry's users: `trainer` (train, promote, monitor, privacy: creates
        and manages its runs and models) or `serving` (reads only); `admin` for the UI. MLFLOW_TRACKING_USERNAME /
        _PASSWORD in the environment win when they name a login of one's own registry (one of ours there, as a process
        started with the serving login has, does not stand for another of ours); None before `infra up` made them."""
        name = self.env.get("MLFLOW_TRACKING_USERNAME")
        if name and name not in MLFLOW_USERS.values():
            return name, self.env.get("MLFLOW_TRACKING_PASSWORD", "")
        try:
            return MLFLOW_USERS[user], self.secret(f"mlflow_{user}")
        except ConfigError:
            return None

    def mlflow_env(self, user: str = "trainer") -> dict[str, str]:
        """Environment for MLflow clients and servers (telemetry off, tracking URI set, `user`'s login)."""
        passed = {k: v for k, v in self.env.items() if k.startswith("MLFLOW_") and "BACKEND" not in k}
        login = self.mlflow_login(user)
        return {
            **passed,  # any other MLFLOW_* setting from the environment or mlflow.env
            "MLFLOW_TRACKING_URI": self.tracking_uri,
            "MLFLOW_EXPERIMENT_NAME": self.experiment_name,
            "MLFLOW_DISABLE_TELEMETRY": self.env.get("MLFLOW_DISABLE_TELEMETRY", "true"),
            "DO_NOT_TRACK": self.env.get("DO_NOT_TRACK", "true"),
            # a registry that is down is said within about half a minute (MLflow's own default retries for ~4 min),
            # long enough to ride out a restart
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": self.env.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "4"),
            "MLFLOW_HTTP_REQUEST_TIMEOUT": self.env.get("MLFLOW_HTTP_REQUEST_TIMEOUT", "30"),
            **({"MLFLOW_TRACKING_USERNAME": login[0], "MLFLOW_TRACKING_PASSWORD": login[1]} if login else {}),
        }

    def privacy(self) -> PrivacySettings:
        """Retention periods and request deadlines (DPDP Act; LEADSCORE_PRIVACY_*), checked when read."""

        def days(name: str, default: int) -> int:
            key = f"LEADSCORE_PRIVACY_{name.upper()}_DAYS"
            raw = self.env.get(key, str(default))
            if not raw.isdigit():
                raise ConfigError(f"{key}={raw!r} is not a whole number of days")
            return int(raw)

        return PrivacySettings(inactivity_days=days("inactivity", 3 * 365), notice_hours=48,
                               log_retention_days=days("log_retention", 366), request_due_days=days("request_due", 30),
                               grievance_due_days=days("grievance_due", 90),
                               topic_retention_days=days("topic_retention", 7))


@dataclass(frozen=True)
class PrivacySettings:
    """How long what is kept (docs/privacy.md)."""

    inactivity_days: int      # a lead with no activity this long is erased (after a 48-hour notice, Rule 8(2))
    notice_hours: int         # the notice comes this long before an erasure for inactivity
    log_retention_days: int   # pseudonymised processing logs are kept this long, then purged (Rule 8(3): >= 1 year)
    request_due_days: int     # access, correction and erasure requests are answered within this
    grievance_due_days: int   # grievances within this (the Rules' outer limit is 90 days)
    topic_retention_days: int  # the raw event topics keep events this long (retention.ms, set at creation)
