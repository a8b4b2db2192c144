-- Security (step 9, least privilege): `leadscore ingest crm` logs in as leadscore_ingest instead of the owner. It
-- makes a dataset's table in schema offline (and owns it: it adds columns a spec gains), protects it with row-level
-- security (compliance.protect_tenant, run as its owner), and writes what a CRM export brings: feature rows, labels,
-- broker assignments, rejects, its run records, consent with its ledger entries, minors, an audit row. It may not:
-- drop or truncate anything, delete lead rows, touch the logs' history, API keys, MLflow's database, other schemas'
-- tables. Its password is set by `leadscore infra up` from the secret pg_ingest (infra/roles.py).

SELECT leadscore_meta.create_login_role('leadscore_ingest');  -- 0014

GRANT USAGE, CREATE ON SCHEMA offline TO leadscore_ingest;
GRANT USAGE ON SCHEMA compliance TO leadscore_ingest;
GRANT SELECT, INSERT, UPDATE ON offline.lead_demographics, offline.lead_engagement, offline.labels,
    offline.lead_brokers TO leadscore_ingest;  -- hand-written views' tables, the label and broker sets
GRANT MAINTAIN ON offline.lead_demographics, offline.lead_engagement, compliance.consent TO leadscore_ingest;  -- ANALYZE
GRANT SELECT, INSERT ON offline.ingest_rejects TO leadscore_ingest;
GRANT SELECT, INSERT, UPDATE ON offline.ingest_runs TO leadscore_ingest;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA offline TO leadscore_ingest;
GRANT SELECT, INSERT, UPDATE ON compliance.consent, compliance.ledger_head TO leadscore_ingest;
GRANT SELECT, INSERT, UPDATE, DELETE ON compliance.minors TO leadscore_ingest;
GRANT SELECT, INSERT ON compliance.consent_ledger TO leadscore_ingest;
GRANT INSERT ON compliance.audit_log TO leadscore_ingest;
GRANT SELECT ON compliance.erasure_list TO leadscore_ingest;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA compliance TO leadscore_ingest;

-- datasets' tables made before this migration (by the owner) become ingest's: it adds the columns a spec gains
DO $$
DECLARE
    t record;
BEGIN
    FOR t IN SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'offline' AND c.relkind = 'r'
               AND c.relname NOT IN ('ingest_rejects', 'ingest_runs', 'labels', 'lead_brokers', 'lead_demographics',
                                     'lead_engagement', 'market_context', 'materialization_runs')
               AND (SELECT count(*) FROM pg_attribute a WHERE a.attrelid = c.oid AND NOT a.attisdropped
                    AND a.attname IN ('lead_id', 'event_timestamp', 'created_at')) = 3
    LOOP
        EXECUTE format('ALTER TABLE offline.%I OWNER TO leadscore_ingest', t.relname);
    END LOOP;
END $$;

-- what the jobs may do with a table ingest makes (the same as 0017, 0021 and 0022 give for the owner's tables)
ALTER DEFAULT PRIVILEGES FOR ROLE leadscore_ingest IN SCHEMA offline
    GRANT SELECT ON TABLES TO leadscore_materialize, leadscore_train;
ALTER DEFAULT PRIVILEGES FOR ROLE leadscore_ingest IN SCHEMA offline
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO leadscore_privacy;
DO $$
DECLARE
    t record;
BEGIN  -- and the tables handed over above, made before those defaults existed for the new owner
    FOR t IN SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'offline' AND c.relkind = 'r' AND pg_get_userbyid(c.relowner) = 'leadscore_ingest'
    LOOP
        EXECUTE format('GRANT SELECT ON offline.%I TO leadscore_materialize, leadscore_train', t.relname);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON offline.%I TO leadscore_privacy', t.relname);
    END LOOP;
END $$;

-- compliance.protect_tenant runs as its owner (it grants on schema offline, which ingest does not own), only for
-- ingest and the owner; training's policy (0022) and ingest's own, which lets it write the lead tables it does not
-- own, join the policies of 0012 and 0017
CREATE OR REPLACE FUNCTION compliance.protect_tenant(tbl regclass) RETURNS void LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    nsp text;
BEGIN
    SELECT n.nspname INTO nsp FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = tbl;
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO leadscore_tenant', nsp);
    EXECUTE format('GRANT SELECT ON %s TO leadscore_tenant', tbl);
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', tbl);
    EXECUTE format('DROP POLICY IF EXISTS tenant_rows ON %s', tbl);
    EXECUTE format('CREATE POLICY tenant_rows ON %s FOR SELECT TO leadscore_tenant USING '
                   '(compliance.lead_tenant(lead_id) = current_setting(''leadscore.tenant'', true))', tbl);
    EXECUTE format('DROP POLICY IF EXISTS job_rows ON %s', tbl);
    EXECUTE format('CREATE POLICY job_rows ON %s TO leadscore_erasure, leadscore_retention USING (true) '
                   'WITH CHECK (true)', tbl);
    EXECUTE format('DROP POLICY IF EXISTS materialize_reads ON %s', tbl);
    EXECUTE format('CREATE POLICY materialize_reads ON %s FOR SELECT TO leadscore_materialize USING (true)', tbl);
    EXECUTE format('DROP POLICY IF EXISTS train_rows ON %s', tbl);
    EXECUTE format('CREATE POLICY train_rows ON %s TO leadscore_train USING (true) WITH CHECK (true)', tbl);
    EXECUTE format('DROP POLICY IF EXISTS ingest_rows ON %s', tbl);
    EXECUTE format('CREATE POLICY ingest_rows ON %s TO leadscore_ingest USING (true) WITH CHECK (true)', tbl);
END $$;
REVOKE EXECUTE ON FUNCTION compliance.protect_tenant(regclass) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION compliance.protect_tenant(regclass) TO leadscore_ingest;

DO $$
DECLARE
    t record;
BEGIN
    FOR t IN SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relrowsecurity AND c.relkind IN ('r', 'p')
               AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'lead_id'
                           AND NOT a.attisdropped)
    LOOP
        PERFORM compliance.protect_tenant(format('%I.%I', t.nspname, t.relname)::regclass);
    END LOOP;
END $$;
