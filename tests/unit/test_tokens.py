"""Signed tokens for people: issued and verified with PyJWT; expired, tampered, unsigned and foreign ones refused."""

from __future__ import annotations

import time
from pathlib import Path

import jwt
import pytest

from infra.config import Settings
from serving.tokens import AUDIENCE, ISSUER, SIGNING, TokenVerifier, issue, looks_like_jwt


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.load({"LEADSCORE_STATE_DIR": str(tmp_path / "state")}, env_file=tmp_path / "none.env")


def test_a_token_carries_tenant_broker_and_the_roles_scopes(settings: Settings) -> None:
    token = issue(settings, "asha@acme", "acme", "broker", broker="asha")
    assert looks_like_jwt(token)
    grant = TokenVerifier(settings).verify(token)
    assert (grant.key_id, grant.tenant, grant.broker, grant.scopes) == ("jwt:asha@acme", "acme", "asha", ("score",))
    officer = TokenVerifier(settings).verify(issue(settings, "dpo@acme", "acme", "privacy_officer"))
    assert officer.scopes == ("consent", "privacy") and not officer.may("score")
    assert (settings.secrets_dir / f"{SIGNING}.password").stat().st_mode & 0o777 == 0o600


def _forged(settings: Settings, **changes: object) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "tenant": "acme", "role": "broker", "iat": now,
              "exp": now + 60, **changes}
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, settings.secret(SIGNING, create=True),
                      algorithm="HS256")


@pytest.mark.parametrize("changes", [
    {"exp": int(time.time()) - 60},  # expired
    {"exp": None},  # no expiry
    {"role": "admin"},  # not a person's role
    {"tenant": "admin"},  # the admin tenant is for keys only
    {"aud": "someone-else"},
    {"iss": "elsewhere"},
    {"tenant": None},
])
def test_expired_foreign_or_incomplete_tokens_are_refused(settings: Settings, changes: dict) -> None:
    assert TokenVerifier(settings).verify(_forged(settings, **changes)) is None


def test_tampered_unsigned_and_other_key_tokens_are_refused(settings: Settings) -> None:
    token = issue(settings, "asha@acme", "acme", "broker")
    head, body, sig = token.split(".")
    other = jwt.encode(jwt.decode(token, options={"verify_signature": False}), "another-secret", algorithm="HS256")
    unsigned = jwt.encode(jwt.decode(token, options={"verify_signature": False}), None, algorithm="none")
    verifier = TokenVerifier(settings)
    assert verifier.verify(f"{head}.{body}.{sig[:-2]}xx") is None
    assert verifier.verify(other) is None and verifier.verify(unsigned) is None
    assert verifier.verify("not.a.token") is None


def test_issuing_checks_role_subject_and_tenant(settings: Settings) -> None:
    for args in (("a", "acme", "owner"), ("", "acme", "broker"), ("a", "admin", "manager")):
        with pytest.raises(ValueError):
            issue(settings, *args)
