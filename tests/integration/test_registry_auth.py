"""The MLflow registry behind MLflow's own authentication, proven over its REST API: nothing answers without a
login, the scoring service's user reads but cannot move or delete, the trainer manages what it made."""

from __future__ import annotations

import httpx
import pytest

from infra.config import MLFLOW_USERS, Settings
from tests.integration.serving_support import MODEL, ensure_champion

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def champion(settings: Settings, stack_env_vars: dict[str, str], applied_store) -> str:  # noqa: ANN001
    return ensure_champion(settings, stack_env_vars)


def _login(settings: Settings, role: str) -> tuple[str, str]:
    return MLFLOW_USERS[role], settings.secret(f"mlflow_{role}")


def test_without_a_login_the_registry_answers_401_to_reads_alias_moves_and_deletes(settings, champion) -> None:  # noqa: ANN001
    api = f"{settings.tracking_uri}/api/2.0/mlflow"
    assert httpx.get(f"{api}/registered-models/alias", params={"name": MODEL, "alias": "champion"}).status_code == 401
    assert httpx.get(f"{api}/experiments/search", params={"max_results": 5}).status_code == 401
    moved = httpx.post(f"{api}/registered-models/alias", json={"name": MODEL, "alias": "champion", "version": "1"})
    assert moved.status_code == 401
    assert httpx.request("DELETE", f"{api}/registered-models/delete", json={"name": MODEL}).status_code == 401
    wrong = httpx.get(f"{api}/registered-models/alias", params={"name": MODEL, "alias": "champion"},
                      auth=("admin", "not-the-password"))
    assert wrong.status_code == 401


def test_the_serving_user_reads_but_cannot_move_or_delete_and_the_trainer_can_move(settings, champion) -> None:  # noqa: ANN001
    api = f"{settings.tracking_uri}/api/2.0/mlflow"
    serving, trainer = _login(settings, "serving"), _login(settings, "trainer")
    read = httpx.get(f"{api}/registered-models/alias", params={"name": MODEL, "alias": "champion"}, auth=serving)
    assert read.status_code == 200 and read.json()["model_version"]["version"] == champion
    body = {"name": MODEL, "alias": "champion", "version": champion}
    assert httpx.post(f"{api}/registered-models/alias", json=body, auth=serving).status_code == 403
    assert httpx.request("DELETE", f"{api}/registered-models/delete", json={"name": MODEL},
                         auth=serving).status_code == 403
    assert httpx.post(f"{api}/registered-models/alias", json=body, auth=trainer).status_code == 200  # same version


def test_the_passwords_are_generated_secrets_and_the_auth_config_is_private(settings) -> None:  # noqa: ANN001
    for role in ("admin", "trainer", "serving"):
        path = settings.secrets_dir / f"mlflow_{role}.password"
        assert path.stat().st_mode & 0o777 == 0o600 and len(path.read_text().strip()) >= 24
    ini = settings.state_dir / "mlflow" / "basic_auth.ini"
    assert ini.stat().st_mode & 0o777 == 0o600 and "admin_password" not in ini.read_text()
