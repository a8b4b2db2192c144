"""Security settings read at run time: the broker's protocol, SASL and TLS; the registry's logins; file modes."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import pytest

from infra.config import ConfigError, Settings
from infra.files import loose_files


def _settings(tmp_path: Path, **env: str) -> Settings:
    return Settings.load({"LEADSCORE_STATE_DIR": str(tmp_path / "state"), **env}, env_file=tmp_path / "none.env")


def test_plaintext_is_the_default_and_sasl_takes_its_mechanism_and_login(tmp_path: Path) -> None:
    assert _settings(tmp_path).kafka_options() == {"security_protocol": "PLAINTEXT"}
    assert _settings(tmp_path).faust_credentials() is None
    s = _settings(tmp_path, KAFKA_SECURITY_PROTOCOL="sasl_plaintext", KAFKA_SASL_MECHANISM="SCRAM-SHA-512",
                  KAFKA_SASL_USERNAME="streams", KAFKA_SASL_PASSWORD="s3cret")
    assert s.kafka_options() == {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-512",
                                 "sasl_plain_username": "streams", "sasl_plain_password": "s3cret"}
    credentials = s.faust_credentials()
    assert (credentials.username, credentials.password, str(credentials.mechanism.value)) == (
        "streams", "s3cret", "SCRAM-SHA-512")


def test_tls_builds_a_context_from_the_named_ca_file(tmp_path: Path) -> None:
    ca = Path(ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt")
    if not ca.is_file():
        pytest.skip("no system CA bundle on this machine")
    s = _settings(tmp_path, KAFKA_SECURITY_PROTOCOL="SASL_SSL", KAFKA_SASL_USERNAME="u", KAFKA_SASL_PASSWORD="p",
                  KAFKA_SSL_CAFILE=str(ca))
    options = s.kafka_options()
    assert isinstance(options["ssl_context"], ssl.SSLContext) and options["security_protocol"] == "SASL_SSL"
    assert isinstance(s.faust_credentials().ssl_context, ssl.SSLContext)  # a context of its own, same files


@pytest.mark.parametrize(("env", "message"), [
    ({"KAFKA_SECURITY_PROTOCOL": "SASL"}, "KAFKA_SECURITY_PROTOCOL='SASL' is not one of"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"}, "needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_MECHANISM": "GSSAPI", "KAFKA_SASL_USERNAME": "u",
      "KAFKA_SASL_PASSWORD": "p"}, "KAFKA_SASL_MECHANISM='GSSAPI' is not one of"),
    ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": "/no/such/ca.pem"}, "KAFKA_SSL_CAFILE=/no/such/ca.pem"),
])
def test_a_wrong_broker_security_setting_is_one_readable_line(tmp_path: Path, env: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        _settings(tmp_path, **env).kafka_options()


def test_mlflow_logins_come_from_the_secrets_and_the_environment_wins(tmp_path: Path) -> None:
    s = _settings(tmp_path)
    assert s.mlflow_login("serving") is None and "MLFLOW_TRACKING_USERNAME" not in s.mlflow_env()
    password = s.secret("mlflow_serving", create=True)
    assert s.mlflow_env("serving")["MLFLOW_TRACKING_USERNAME"] == "leadscore-serving"
    assert s.mlflow_env("serving")["MLFLOW_TRACKING_PASSWORD"] == password
    own = _settings(tmp_path, MLFLOW_TRACKING_USERNAME="ci-bot", MLFLOW_TRACKING_PASSWORD="pw")
    assert own.mlflow_login("serving") == ("ci-bot", "pw")
    # a process started with our serving login (the scoring service) still signs in as the trainer where it must
    # write (erasure rewrites a run's row artifacts): one of our users in the environment stands for itself only
    trainer = s.secret("mlflow_trainer", create=True)
    served = _settings(tmp_path, MLFLOW_TRACKING_USERNAME="leadscore-serving", MLFLOW_TRACKING_PASSWORD=password)
    assert served.mlflow_login("trainer") == ("leadscore-trainer", trainer)
    assert served.mlflow_login("serving") == ("leadscore-serving", password)


def test_settings_make_what_the_process_writes_its_own_and_the_sweep_finds_the_rest(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        s = _settings(tmp_path)
        s.state_dir.mkdir(parents=True)
        (s.state_dir / "logs").mkdir()
        (s.state_dir / "logs" / "a.log").write_text("x")
        assert loose_files(s.state_dir) == [] or all(p == s.state_dir for p, _ in loose_files(s.state_dir))
        loose = s.state_dir / "export.csv"
        loose.write_text("x")
        os.chmod(loose, 0o644)
        assert [p for p, _ in loose_files(s.state_dir) if p != s.state_dir] == [loose]
    finally:
        os.umask(old)
