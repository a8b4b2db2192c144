-- Security (step 9): row-level security by tenant, the defence in depth behind the API's tenant mapping
-- (compliance/tenants.py: a lead of tenant T is stored as 'T/<id>', the default tenant's under its bare id).
-- The role leadscore_tenant reads the lead-keyed tables, and sees only the rows of the tenant its session names
-- (SET leadscore.tenant); without a tenant it sees nothing. The privacy API's reads switch to it for their query
-- (SET LOCAL ROLE), so a bug in our code that asks for another tenant's lead still gets no row. The owner that
-- runs migrations and the jobs is not subject to the policies (it owns the tables). Tables made later (a dataset's
-- offline table at its first ingest) get the same by compliance.protect_tenant(), which pipelines/ingest.py calls.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'leadscore_tenant') THEN
        CREATE ROLE leadscore_tenant NOLOGIN;
    END IF;
END $$;

GRANT leadscore_tenant TO CURRENT_USER;

CREATE OR REPLACE FUNCTION compliance.lead_tenant(lead_id text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN lead_id IS NULL THEN NULL
                WHEN strpos(lead_id, '/') = 0 THEN 'default'
                ELSE split_part(lead_id, '/', 1) END
$$;

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
END $$;

GRANT USAGE ON SCHEMA compliance TO leadscore_tenant;
GRANT EXECUTE ON FUNCTION compliance.lead_tenant(text) TO leadscore_tenant;

DO $$
DECLARE
    t record;
BEGIN
    FOR t IN SELECT c.table_schema, c.table_name FROM information_schema.columns c
             JOIN information_schema.tables i USING (table_schema, table_name)
             WHERE c.column_name = 'lead_id' AND i.table_type = 'BASE TABLE'
               AND c.table_schema NOT IN ('pg_catalog', 'information_schema')
    LOOP
        PERFORM compliance.protect_tenant(format('%I.%I', t.table_schema, t.table_name)::regclass);
    END LOOP;
END $$;
