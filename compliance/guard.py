"""What ingest asks of privacy: refuse rows of erased leads dated before their erasure, ledger consent changes."""

from __future__ import annotations

import pandas as pd

from infra.config import Settings


class IngestGuard:
    """Loaded once per ingest run: the erasure list (token -> erased at) and the notice versions of the spec."""

    def __init__(self, settings: Settings, conn, spec) -> None:  # noqa: ANN001 - psycopg connection, DatasetSpec
        from compliance import notices
        from compliance.tokens import Tokenizer

        self.settings, self.spec = settings, spec
        self.token = Tokenizer(settings)
        self.erased = {t: at for t, at in conn.execute("SELECT lead_token, erased_at FROM compliance.erasure_list")}
        self.notice = {}
        for purpose, consent in spec.consent.items():
            version = consent.notice or notices.current()
            try:
                notices.check(version, purpose)
            except notices.NoticeError as exc:
                from pipelines.spec import SpecError

                raise SpecError(f"spec '{spec.name}': consent.{purpose}.notice: {exc}") from None
            self.notice[purpose] = version
        notices.publish(settings)
        self.recorded_by = f"ingest:{spec.name}"

    def drop_erased(self, feats: pd.DataFrame) -> tuple[pd.DataFrame, int]:
        """feats without the rows of erased leads dated at or before their erasure; and how many were dropped."""
        if not self.erased or feats.empty:
            return feats, 0
        erased_at = pd.Series([self.erased.get(t) for t in self.token.many(feats["lead_id"].astype(str))],
                              index=feats.index, dtype="object")
        stamps = pd.to_datetime(feats["event_timestamp"], utc=True)
        old = erased_at.notna() & (stamps <= pd.to_datetime(erased_at, utc=True))
        return feats.loc[~old], int(old.sum())

    def drop_erased_rejects(self, rejects: pd.DataFrame) -> pd.DataFrame:
        """Rejected rows of erased leads are not kept either (a reject names its lead)."""
        if not self.erased or rejects.empty or "lead_id" not in rejects.columns:
            return rejects
        ids = rejects["lead_id"]
        tokens = [self.token(str(v)) if isinstance(v, str) else None for v in ids]
        return rejects.loc[[t not in self.erased for t in tokens]]

    def record_minors(self, conn, feats: pd.DataFrame) -> int:  # noqa: ANN001
        """Leads these rows show under 18 (compliance/children.py), in the chunk's transaction."""
        from compliance.children import record_minors

        return record_minors(conn, self.spec, feats)

    def ledger(self, conn, purpose: str, changed: list[tuple[str, bool]]) -> None:  # noqa: ANN001
        """Append the consent rows this chunk changed (lead, granted) to the ledger, in the chunk's transaction."""
        from compliance.ledger import Change, append

        version = self.notice[purpose]
        append(conn, self.settings, [Change(lead, purpose, granted, version, "crm_export", self.recorded_by)
                                     for lead, granted in changed])
