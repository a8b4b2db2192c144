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
        key, new, sha = self._key, hmac.new, hashlib.sha256
        return [new(key, lead.encode(), sha).hexdigest()[:32] for lead in lead_ids]
