"""Settings: environment over mlflow.env over defaults, derived addresses, generated secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.config import ConfigError, Settings


def test_defaults_bind_loopback_and_derive_every_address(tmp_path: Path) -> None:
    s = Settings.load({"LEADSCORE_STATE_DIR": str(tmp_path)}, env_file=tmp_path / "none.env")
    assert s.host == "127.0.0.1"
    assert (s.postgres_port, s.redis_port, s.kafka_port, s.mlflow_port) == (15432, 16379, 19092, 15000)
    assert s.tracking_uri == "http://127.0.0.1:15000"
    assert s.kafka_bootstrap == "127.0.0.1:19092"
    assert s.state_dir == tmp_path


def test_repository_mlflow_env_follows_the_configured_port(tmp_path: Path) -> None:
    repo_env = Path(__file__).resolve().parents[2] / "mlflow.env"
    s = Settings.load({"LEADSCORE_STATE_DIR": str(tmp_path), "LEADSCORE_MLFLOW_PORT": "25000"}, env_file=repo_env)
    assert s.tracking_uri == "http://127.0.0.1:25000"
    assert s.model_name == "lead-scorer"
    assert s.mlflow_env()["MLFLOW_DISABLE_TELEMETRY"] == "true"


def test_environment_wins_over_the_env_file(tmp_path: Path) -> None:
    env_file = tmp_path / "mlflow.env"
    env_file.write_text("MLFLOW_EXPERIMENT_NAME=from-file\nLEADSCORE_MODEL_NAME=file-model\n")
    s = Settings.load({"MLFLOW_EXPERIMENT_NAME": "from-env"}, env_file=env_file)
    assert s.experiment_name == "from-env"
    assert s.model_name == "file-model"


@pytest.mark.parametrize("bad", ["abc", "0", "70000", "-1"])
def test_a_bad_port_is_a_readable_config_error(bad: str) -> None:
    with pytest.raises(ConfigError, match=f"LEADSCORE_REDIS_PORT={bad!r} is not a TCP port"):
        Settings.load({"LEADSCORE_REDIS_PORT": bad})


def test_secrets_are_generated_once_with_mode_0600(tmp_path: Path) -> None:
    s = Settings.load({"LEADSCORE_STATE_DIR": str(tmp_path)})
    with pytest.raises(ConfigError, match="run `leadscore infra up` first"):
        s.secret("pg")
    first = s.secret("pg", create=True)
    assert s.secret("pg", create=True) == first == s.secret("pg")
    assert len(first) >= 24
    assert (tmp_path / "secrets" / "pg.password").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "secrets").stat().st_mode & 0o777 == 0o700


def test_a_password_from_the_environment_is_url_quoted_in_dsns(tmp_path: Path) -> None:
    s = Settings.load({"LEADSCORE_STATE_DIR": str(tmp_path), "LEADSCORE_PG_PASSWORD": "p@ss/word",
                       "LEADSCORE_PG_MLFLOW_PASSWORD": "ml:f/low", "LEADSCORE_PG_HOST": "db.internal"})
    assert s.pg_dsn() == "postgresql://leadscore:p%40ss%2Fword@db.internal:15432/leadscore"
    assert s.mlflow_backend_uri.startswith(
        "postgresql+psycopg://leadscore_mlflow:ml%3Af%2Flow@db.internal:15432/mlflow")
    assert not (tmp_path / "secrets").exists()
