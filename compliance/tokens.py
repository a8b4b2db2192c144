"""A lead's token: HMAC-SHA256 of its id under the `privacy_token` key (secrets directory, 0600), 32 hex characters.

Records the law asks to keep after an erasure (the consent ledger, processing logs, model lineage) name the lead
by its token only: the id cannot be computed from it, and only a holder of the key can test whether a given id is
the one (what keeps an erased lead's replayed events out).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from infra.config import Settings

KEY = "privacy_token"
PREFIX = "tok_"  # lead_id of a pseudonymised row: 'tok_' + token


class Tokenizer:
    """lead_id -> token, with the key read once."""

    def __init__(self, settings: Settings) -> None:
        self._key = settings.secret(KEY, create=True).encode()

    def __call__(self, lead_id: str) -> str:
        return hmac.new(self._key, lead_id.encode(), hashlib.sha256).hexdigest()[:32]

    def many(self, lead_ids: Iterable[str]) -> list[str]:
        """The tokens of many ids (the same values as one by one, about 3x faster)."""
        return hmac_sha256_hex(self._key, lead_ids, 32)


def hmac_sha256_hex(key: bytes, values: Iterable[str], length: int = 64) -> list[str]:
    """HMAC-SHA256 (RFC 2104) of each text, hex, the first `length` digits: the keyed inner and outer states made
    once and copied per value, which is several times faster than `hmac.new` or `hmac.digest` per value."""
    if len(key) > 64:  # SHA-256's block size: a longer key is hashed first, as RFC 2104 says
        key = hashlib.sha256(key).digest()
    key = key.ljust(64, b"\0")
    inner, outer = hashlib.sha256(bytes(b ^ 0x36 for b in key)), hashlib.sha256(bytes(b ^ 0x5C for b in key))
    out = []
    for value in values:
        h = inner.copy()
        h.update(value.encode())
        o = outer.copy()
        o.update(h.digest())
        out.append(o.hexdigest()[:length])
    return out
