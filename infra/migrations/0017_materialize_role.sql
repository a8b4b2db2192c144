-- Security (step 9, least privilege): `leadscore materialize` logs in as leadscore_materialize. It reads the offline
-- feature tables (those of datasets ingested later too), consent, minors, the ingest runs (a partial dataset is not
-- served) and the Feast registry, and records its runs; nothing else: no UPDATE or DELETE, no DDL, no log, key or
-- ledger. It writes the online store (Redis) as the pipelines' user. Its password is set by `leadscore infra up`
-- from the secret pg_materialize (infra/roles.py).

SELECT leadscore_meta.create_login_role('leadscore_materialize');  -- 0014

GRANT USAGE ON SCHEMA offline, compliance, public TO leadscore_materialize;
GRANT SELECT ON ALL TABLES IN SCHEMA offline TO leadscore_materialize;
ALTER DEFAULT PRIVILEGES IN SCHEMA offline GRANT SELECT ON TABLES TO leadscore_materialize;  -- tables ingest makes
GRANT INSERT ON offline.materialization_runs TO leadscore_materialize;
GRANT USAGE ON SEQUENCE offline.materialization_runs_id_seq TO leadscore_materialize;
GRANT SELECT ON compliance.consent, compliance.minors TO leadscore_materialize;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO leadscore_materialize;  -- the Feast registry
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO leadscore_materialize;

-- row-level security (0012): a materialization serves every tenant's leads, so it reads every row of the lead
-- tables; compliance.protect_tenant (run by ingest on a dataset's new table) now gives it the same policy
CREATE OR REPLACE FUNCTION compliance.protect_tenant(tbl regclass) RETURNS void LANGUAGE plpgsql AS $$
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
    -- row-level security denies every role that is not the owner and has no policy: the erasure and retention
    -- jobs' roles (0011) keep reaching every row, within what their grants allow
    EXECUTE format('DROP POLICY IF EXISTS job_rows ON %s', tbl);
    EXECUTE format('CREATE POLICY job_rows ON %s TO leadscore_erasure, leadscore_retention USING (true) '
                   'WITH CHECK (true)', tbl);
    EXECUTE format('DROP POLICY IF EXISTS materialize_reads ON %s', tbl);
    EXECUTE format('CREATE POLICY materialize_reads ON %s FOR SELECT TO leadscore_materialize USING (true)', tbl);
END $$;

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
