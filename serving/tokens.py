"""Signed tokens (JWT) for people, accepted beside API keys: `Authorization: Bearer <jwt>`.

A token names its subject (the person's account), tenant, broker (optional), role and expiry; it is signed with
HS256 under the state directory's `jwt_signing` secret (`leadscore serve token create` issues one), or, when
LEADSCORE_JWT_PUBLIC_KEY_FILE names a PEM public key, verified as RS256/ES256 from an identity provider instead.
Verified with PyJWT: the algorithm list is fixed (no `none`, no algorithm confusion), `exp`, `iat`, `sub`,
`tenant` and `role` are required, issuer and audience are checked. A role maps to scopes: brokers, managers and
data scientists score; privacy officers change consent and answer rights requests.
"""

from __future__ import annotations

import time
from pathlib import Path

from compliance.tenants import NAME as TENANT_NAME
from infra.config import ConfigError, Settings
from serving.keys import ApiKey, default_burst

SIGNING = "jwt_signing"
ISSUER, AUDIENCE = "leadscore", "leadscore-api"
ROLES = {"broker": ("score",), "manager": ("score",), "data_scientist": ("score",),
         "privacy_officer": ("consent", "privacy")}
REQUIRED = ["exp", "iat", "sub", "tenant", "role"]


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and not token.startswith("ls_")


def issue(settings: Settings, subject: str, tenant: str, role: str, broker: str | None = None,
          ttl_s: float = 8 * 3600) -> str:
    """A signed token for one person (HS256 under the state directory's signing secret)."""
    import jwt

    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}: one of {', '.join(ROLES)}")
    if not subject.strip() or not tenant.strip():
        raise ValueError("a token needs a subject (the person's account) and a tenant")
    if tenant == "admin":
        raise ValueError("tokens are for people of a tenant; the admin tenant uses API keys")
    from compliance.tenants import check_tenant

    check_tenant(tenant)
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": subject, "tenant": tenant, "role": role, "iat": now,
              "exp": now + int(ttl_s), **({"broker": broker} if broker else {})}
    return jwt.encode(claims, settings.secret(SIGNING, create=True), algorithm="HS256")


class TokenVerifier:
    """Checks presented tokens; the grant a valid one carries, as an ApiKey of key id `jwt:<subject>`."""

    def __init__(self, settings: Settings) -> None:
        public = settings.env.get("LEADSCORE_JWT_PUBLIC_KEY_FILE")
        if public:
            if not Path(public).is_file():
                raise ConfigError(f"LEADSCORE_JWT_PUBLIC_KEY_FILE={public}: no such file")
            self.key, self.algorithms = Path(public).read_text(), ["RS256", "ES256"]
        else:
            self.key, self.algorithms = settings.secret(SIGNING, create=True), ["HS256"]
        self.rate = float(settings.env.get("LEADSCORE_JWT_RATE", "1000"))

    def claims(self, token: str) -> dict | None:
        """The claims of a valid, unexpired token of a known role and tenant; None for anything else."""
        import jwt

        try:
            claims = jwt.decode(token, self.key, algorithms=self.algorithms, audience=AUDIENCE, issuer=ISSUER,
                                options={"require": REQUIRED}, leeway=5)
        except jwt.PyJWTError:
            return None
        role, tenant, subject = claims.get("role"), claims.get("tenant"), claims.get("sub")
        if role not in ROLES or not isinstance(tenant, str) or not TENANT_NAME.fullmatch(tenant) or tenant == "admin" \
                or not isinstance(subject, str) or not subject:
            return None
        if not isinstance(claims.get("broker"), str):
            claims.pop("broker", None)
        return claims

    def verify(self, token: str) -> ApiKey | None:
        """The grant of a valid, unexpired token of a known role; None for anything else."""
        claims = self.claims(token)
        if claims is None:
            return None
        return ApiKey(f"jwt:{claims['sub'][:64]}", claims["tenant"], claims.get("broker"), self.rate,
                      default_burst(self.rate), ROLES[claims["role"]])
