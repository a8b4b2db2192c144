"""Children (DPDP Act s.9): no tracking or behavioural profiling of a lead under 18 without verifiable parental
consent.

A spec marks the feature that tells a lead's age (`personal: age`, years at the row's time) or date of birth
(`personal: date_of_birth`); ingest records each lead it shows under 18 in compliance.minors with the time the lead
comes of age (`adult_from`), and removes the record when a later row shows an adult. Until then, unless a
`parental_consent` consent is granted (`leadscore privacy consent grant L --purpose parental_consent` after the
parent or guardian is verified): scoring answers 403 naming the reason, stream workers drop the lead's events
(counted, never stored), materialization keeps it offline only, and training sets leave it out.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd

ADULT = 18
# SQL: the lead `{lead}` is a minor without parental consent (used wherever scoring consent is read)
_UNPROTECTED = ("EXISTS (SELECT 1 FROM compliance.minors m WHERE m.lead_id = {lead} AND m.adult_from > now() AND NOT "
                "EXISTS (SELECT 1 FROM compliance.consent p WHERE p.lead_id = m.lead_id AND p.purpose = "
                "'parental_consent' AND p.granted AND (p.expires_at IS NULL OR p.expires_at > now())))")
UNPROTECTED_MINORS = ("SELECT m.lead_id FROM compliance.minors m WHERE m.adult_from > now() AND NOT EXISTS (SELECT 1 "
                      "FROM compliance.consent p WHERE p.lead_id = m.lead_id AND p.purpose = 'parental_consent' AND "
                      "p.granted AND (p.expires_at IS NULL OR p.expires_at > now()))")
REASON = ("the lead is under 18 and no verifiable parental consent is recorded (DPDP Act s.9): record it with "
          "purpose 'parental_consent'")


def unprotected_minor(lead: str) -> str:
    """SQL condition: the lead column `lead` names a minor without parental consent."""
    return _UNPROTECTED.format(lead=lead)


def adult_from(spec, feats: pd.DataFrame) -> pd.Series | None:  # noqa: ANN001 - pipelines.spec.DatasetSpec
    """When each row's lead comes of age, from the spec's age or date-of-birth feature (None: the spec has none)."""
    marked = [f for f in spec.features if f.personal is not None]
    if not marked or marked[0].name not in feats.columns:
        return None
    f = marked[0]
    if f.personal == "date_of_birth":
        born = pd.to_datetime(feats[f.name], utc=True, errors="coerce")
        return born + pd.DateOffset(years=ADULT)
    age = pd.to_numeric(feats[f.name], errors="coerce")
    at = pd.to_datetime(feats["event_timestamp"], utc=True)
    return at + pd.to_timedelta((ADULT - age).clip(lower=0) * 365.25, unit="D")


def record_minors(conn, spec, feats: pd.DataFrame) -> int:  # noqa: ANN001
    """Upsert the leads these rows show under 18; forget those they show adult. Returns the minors recorded."""
    adult = adult_from(spec, feats)
    if adult is None:
        return 0
    now = pd.Timestamp(datetime.now(UTC))
    known = adult.notna()
    minors = feats.loc[known & (adult > now), "lead_id"].astype(str)
    adults = feats.loc[known & (adult <= now), "lead_id"].astype(str).unique().tolist()
    if adults:
        conn.execute("DELETE FROM compliance.minors WHERE dataset = %s AND lead_id = ANY(%s)", (spec.name, adults))
    if len(minors):
        rows = pd.DataFrame({"lead_id": minors, "adult_from": adult[minors.index]}).drop_duplicates("lead_id",
                                                                                                   keep="last")
        conn.execute("INSERT INTO compliance.minors (lead_id, dataset, adult_from) SELECT * FROM unnest(%s::text[], "
                     "%s::text[], %s::timestamptz[]) ON CONFLICT (lead_id) DO UPDATE SET adult_from = "
                     "EXCLUDED.adult_from, dataset = EXCLUDED.dataset, recorded_at = now()",
                     (rows["lead_id"].tolist(), [spec.name] * len(rows),
                      [t.to_pydatetime() for t in rows["adult_from"]]))
    return len(set(minors))
