"""A tenant per row (issue #16): one CRM export of several broker firms, each row's tenant in a column of its own
(`tenant_column` in the spec). Each row's lead is stored under its tenant; a row without a valid tenant name is
rejected with its reason; `--tenant` is refused beside it."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from infra.config import Settings

pytestmark = [pytest.mark.integration]
SPEC = """
name: test_tenant_column
description: one export of several broker firms (tests)
owner: tests
tenant_column: Firm
entity: {column: Lead Ref}
event_timestamp: {column: Created, format: "%Y-%m-%d"}
label: {column: Won, positive: ["Yes"], negative: ["No"]}
consent: {scoring: {default: true, source: tests}}
features:
  - {column: Visits, name: visits, type: int, min: 0}
"""
ROWS = [("TC-1", "acme"), ("TC-1", "beta"), ("TC-2", "default"), ("TC-3", "Not A Firm!"), ("TC-4", ""),
        ("TC-5", "acme")]


def test_each_row_is_stored_under_its_own_tenant(settings: Settings, tmp_path: Path) -> None:
    from pipelines.dataset import drop_dataset
    from pipelines.ingest import ingest_crm
    from pipelines.spec import SpecError, load_spec

    (tmp_path / "datasets").mkdir()
    spec_path = tmp_path / "datasets" / "test_tenant_column.yaml"
    spec_path.write_text(SPEC)
    export = tmp_path / "firms.csv"
    export.write_text("Lead Ref,Firm,Created,Won,Visits\n"
                      + "".join(f"{lead},{firm},2025-03-0{i + 1},{'Yes' if i % 2 else 'No'},{i}\n"
                                for i, (lead, firm) in enumerate(ROWS)))
    spec = load_spec(spec_path)
    with pytest.raises(SpecError, match="takes each row's tenant from column 'Firm'"):
        ingest_crm(settings, export, spec, progress=False, tenant="acme")
    result = ingest_crm(settings, export, spec, progress=False)
    try:
        assert (result.rows_loaded, result.rows_rejected) == (4, 2), result
        with psycopg.connect(settings.pg_dsn()) as conn:
            stored = {r[0] for r in conn.execute("SELECT lead_id FROM offline.test_tenant_column")}
            consent = {r[0] for r in conn.execute("SELECT lead_id FROM compliance.consent WHERE lead_id = ANY(%s)",
                                                  (sorted(stored),))}
            reasons = [r[0] for r in conn.execute(
                "SELECT reason FROM offline.ingest_rejects WHERE dataset = 'test_tenant_column' ORDER BY row_number")]
        assert stored == {"acme/TC-1", "beta/TC-1", "TC-2", "acme/TC-5"}
        assert consent == stored
        assert reasons == ["tenant 'Not A Firm!' is not a tenant name: 1-32 of a-z, 0-9, _ and -, starting with a "
                           "letter or digit (column 'Firm')", "missing tenant (column 'Firm')"]
    finally:
        drop_dataset(settings, "test_tenant_column", folder=tmp_path / "datasets")
    with pytest.raises(ValueError, match="cannot both be set"):
        spec_path.write_text(SPEC.replace("tenant_column: Firm", "tenant_column: Firm\ntenant: acme"))
        load_spec(spec_path)
