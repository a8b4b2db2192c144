"""`leadscore privacy correct LEAD_ID --set field=value`: a person's right to correction (DPDP Act s.12).

The field is found among the dataset specs' features (`--dataset` when several datasets have it); the value is
checked as ingest checks it (type, `min`/`max`, `allowed`). A corrected row is written: the lead's latest row in
the dataset's table with the new values, stamped now, so point-in-time sets and serving use it from now on; then
the online store is refreshed from it (materialization of that view) and the change audited and recorded as a
correction request, closed at once. Hashed fields cannot be corrected here: the product holds only their hash.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from compliance.erase import PrivacyError, check_ids
from infra.config import REPO_ROOT, Settings

ROLE = "privacy"  # its own PostgreSQL login (infra/migrations/0021_privacy_role.sql)

SPECS = REPO_ROOT / "feature_repo" / "datasets"


@dataclass
class Correction:
    lead_id: str
    dataset: str
    table: str
    changed: dict[str, Any]
    previous: dict[str, Any]
    request_id: str
    online_rows: int


def parse_assignments(pairs: list[str]) -> dict[str, str]:
    """['city=Pune', ...] -> {'city': 'Pune'}; PrivacyError naming a malformed one."""
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise PrivacyError(f"--set: {pair!r} is not field=value")
        out[name.strip()] = value
    if not out:
        raise PrivacyError("--set: give at least one field=value")
    return out


def _convert(feature, text: str) -> Any:  # noqa: ANN001, ANN401 - pipelines.spec.FeatureSpec
    """The stored value of `text` for this feature, checked as ingest checks it."""
    where = f"--set {feature.name}"
    if text == "":
        if feature.required:
            raise PrivacyError(f"{where}: the feature is required, it cannot be emptied")
        return None
    if feature.type in ("int", "float"):
        try:
            value = float(text)
        except ValueError:
            raise PrivacyError(f"{where}: {text!r} is not a number") from None
        if not math.isfinite(value) or (feature.type == "int" and not value.is_integer()):
            kind = "an integer" if feature.type == "int" else "a finite number"
            raise PrivacyError(f"{where}: {text!r} is not {kind}")
        if (feature.min is not None and value < feature.min) or (feature.max is not None and value > feature.max):
            raise PrivacyError(f"{where}: {text} is outside {feature.min}..{feature.max}")
        return int(value) if feature.type == "int" else value
    if feature.type == "bool":
        if text.lower() not in ("true", "false", "yes", "no", "1", "0"):
            raise PrivacyError(f"{where}: {text!r} is not true or false")
        return text.lower() in ("true", "yes", "1")
    if feature.type == "date":
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            raise PrivacyError(f"{where}: {text!r} is not an ISO 8601 date") from None
    if feature.allowed is not None and text not in feature.allowed:
        raise PrivacyError(f"{where}: {text!r} is not one of {feature.allowed}")
    return text


def _spec_for(fields: dict[str, str], dataset: str | None, folder: Path):  # noqa: ANN202 - DatasetSpec
    from pipelines.spec import load_spec

    specs = [load_spec(p) for p in sorted(folder.glob("*.yaml"))]
    if dataset is not None:
        specs = [s for s in specs if s.name == dataset]
        if not specs:
            raise PrivacyError(f"--dataset: no dataset spec named {dataset!r} in {folder}")
    hashed = {p.as_feature for s in specs for p in s.pii if p.as_feature}
    for name in fields:
        if name in hashed:
            raise PrivacyError(f"--set {name}: stored as a keyed hash only; correct it in the CRM and re-ingest")
    holders = [s for s in specs if set(fields) <= {f.name for f in s.features}]
    if not holders:
        unknown = sorted(set(fields) - {f.name for s in specs for f in s.features})
        raise PrivacyError(f"--set {(unknown or sorted(fields))[0]}: no dataset has "
                           + ("this feature" if unknown else "all of these features together"))
    return holders


def correct(settings: Settings, lead_id: str, fields: dict[str, str], dataset: str | None = None,
            requested_by: str = "operator", folder: Path = SPECS) -> Correction:
    """Write the corrected row, refresh the online store, audit it."""
    import psycopg

    from compliance.requests import close_request, open_request
    from pipelines.materialize import materialize

    (lead_id,) = check_ids([lead_id])
    holders = _spec_for(fields, dataset, folder)
    with psycopg.connect(settings.pg_dsn(role=ROLE)) as conn:
        held = [s for s in holders if conn.execute("SELECT to_regclass(%s)", (s.table,)).fetchone()[0]
                and conn.execute(f"SELECT 1 FROM {s.table} WHERE lead_id = %s LIMIT 1", (lead_id,)).fetchone()]
        if not held:
            raise PrivacyError(f"lead_id: {lead_id!r} has no row in "
                               f"{', '.join(s.table for s in holders)}: nothing to correct")
        if len(held) > 1:
            raise PrivacyError(f"--dataset: the lead has these features in {[s.name for s in held]}: say which")
        spec = held[0]
        by_name = {f.name: f for f in spec.features}
        values = {name: _convert(by_name[name], text) for name, text in fields.items()}
        cur = conn.execute(f"SELECT * FROM {spec.table} WHERE lead_id = %s ORDER BY event_timestamp DESC LIMIT 1",
                           (lead_id,))
        names = [d.name for d in cur.description]
        latest = dict(zip(names, cur.fetchone(), strict=True))
        now = datetime.now(UTC)
        row = {**latest, **values, "event_timestamp": max(now, latest["event_timestamp"]), "created_at": now}
        cols = ", ".join(f'"{c}"' for c in row)
        conn.execute(f"INSERT INTO {spec.table} ({cols}) VALUES ({', '.join(['%s'] * len(row))}) "
                     f"ON CONFLICT (lead_id, event_timestamp) DO UPDATE SET "
                     + ", ".join(f'"{c}" = EXCLUDED."{c}"' for c in row if c not in ("lead_id", "event_timestamp")),
                     list(row.values()))
        previous = {name: latest.get(name) for name in values}
        conn.execute("INSERT INTO compliance.audit_log (actor, action, lead_id, detail) VALUES (%s, 'correct', %s, %s)",
                     (requested_by, lead_id, json.dumps({"table": spec.table, "fields": sorted(values)})))
    view = spec.feature_view or spec.name
    runs = materialize(settings, [view])
    request_id = open_request(settings, "correction", lead_id, "cli", {"requested_by": requested_by})
    with psycopg.connect(settings.pg_dsn(role=ROLE)) as conn:
        close_request(conn, request_id, "done", {"table": spec.table, "fields": sorted(values)})
    return Correction(lead_id, spec.name, spec.table, values, previous, request_id,
                      sum(r.rows_written for r in runs))
