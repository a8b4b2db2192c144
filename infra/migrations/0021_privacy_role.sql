-- Security (step 9, least privilege): the data principal's rights (`leadscore privacy ...`, the privacy API's
-- routes in the scoring service, the console's privacy officer page) log in as leadscore_privacy instead of the
-- owner. Erasure, export, correction and retention must reach every lead-keyed row of every tenant, so the role
-- reads, deletes and (for a correction) writes the lead tables, those of datasets ingested later too; it keeps the
-- consent ledger, requests, receipts and notices. It may not: make, drop or truncate anything, touch API keys'
-- secrets, console sessions, MLflow's database, change the audit log or the ledger but as the erasure or retention
-- role (0011's trigger: lead_id only, old audit rows only), or become a superuser's equal. Its password is set by
-- `leadscore infra up` from the secret pg_privacy (infra/roles.py).

SELECT leadscore_meta.create_login_role('leadscore_privacy');  -- 0014

-- the two job roles of 0011 (SET LOCAL ROLE for one statement, and their row policies over every tenant's rows)
-- and the tenant reader of 0012 (the API's per-tenant reads)
GRANT leadscore_erasure, leadscore_retention, leadscore_tenant TO leadscore_privacy;

GRANT USAGE ON SCHEMA offline, compliance, serving, text_store, monitoring TO leadscore_privacy;

-- every lead's rows: export reads them, erasure and retention delete them, a correction writes a dataset's row
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA offline TO leadscore_privacy;
REVOKE INSERT, UPDATE, DELETE ON offline.ingest_runs, offline.materialization_runs, offline.market_context
    FROM leadscore_privacy;
ALTER DEFAULT PRIVILEGES IN SCHEMA offline GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO leadscore_privacy;
GRANT SELECT, DELETE ON text_store.messages, serving.text_signals, monitoring.reference_rows TO leadscore_privacy;
GRANT SELECT, UPDATE, DELETE ON serving.prediction_log TO leadscore_privacy;  -- pseudonymised by erasure
GRANT SELECT (key_id, tenant, broker) ON serving.api_keys TO leadscore_privacy;  -- an export names the broker

-- the privacy records
GRANT SELECT, INSERT, UPDATE, DELETE ON compliance.consent, compliance.minors TO leadscore_privacy;
GRANT SELECT, INSERT ON compliance.consent_ledger, compliance.audit_log, compliance.erasure_receipts,
    compliance.notices TO leadscore_privacy;
GRANT SELECT, INSERT, UPDATE ON compliance.ledger_head, compliance.erasure_list, compliance.requests,
    compliance.retention_notices TO leadscore_privacy;
GRANT SELECT ON compliance.lineage TO leadscore_privacy;  -- which runs learned from a lead (training writes it)
GRANT USAGE ON ALL SEQUENCES IN SCHEMA compliance TO leadscore_privacy;

-- row-level security: the lead tables' job_rows policy (compliance.protect_tenant, 0017) names the erasure and
-- retention roles, whose rows this role has through its membership; nothing more is needed
