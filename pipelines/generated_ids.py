"""Lead ids for files that have none (`entity: {generate: row_hash | row_number}`); both are pseudonymous.

row_hash: `rh-` and the first 32 hex digits of HMAC-SHA256, under the PII key, of the row's raw values in column
order; the k-th identical row (k >= 2) gets `-k` appended, so duplicates stay distinct. It reveals nothing about the
row without the key and is the same on every ingest of the same rows, whatever their order; it changes when any
value of the row, or the file's columns, change.
row_number: `<dataset>-<n>`, n the 1-based data row of the file: the same on every ingest only while the file's rows
keep their order.
"""

from __future__ import annotations

import hashlib
import hmac

import pandas as pd

from pipelines.spec import DatasetSpec

ROW_HASH_PREFIX = "rh-"
_DOMAIN = b"leadscore row_hash v1\x1e"  # keeps row digests apart from the PII digests made with the same key
_FIELD = "\x1f"
_NONE = "\x00"


class RowIds:
    """Generates the ids of one file, chunk after chunk (row_hash counts identical rows across chunks)."""

    def __init__(self, spec: DatasetSpec, key: bytes) -> None:
        self.kind = spec.entity.generate
        self.dataset = spec.name
        self.key = key
        self.seen: dict[bytes, int] = {}

    def __call__(self, raw: pd.DataFrame, first_row: int) -> pd.Series:
        """Ids for `raw` (the file's columns as read), whose first row is the file's data row `first_row`."""
        if self.kind == "row_number":
            ids = [f"{self.dataset}-{n}" for n in range(first_row, first_row + len(raw))]
            return pd.Series(ids, index=raw.index, dtype=object)
        ids = []
        for values in raw.itertuples(index=False, name=None):
            payload = _FIELD.join(_NONE if v is None else str(v) for v in values).encode()
            digest = hmac.new(self.key, _DOMAIN + payload, hashlib.sha256).digest()[:16]
            count = self.seen.get(digest, 0) + 1
            self.seen[digest] = count
            ids.append(ROW_HASH_PREFIX + digest.hex() + (f"-{count}" if count > 1 else ""))
        return pd.Series(ids, index=raw.index, dtype=object)
