-- Security (step 9, tenants): the scoring path reads one tenant's rows at a time. Until now its role's policy
-- (0014: serving_reads) showed it every tenant's consent, minors, messages, labels and text signals, the API's id
-- mapping (compliance/tenants.py) being the only boundary. Now each read names its tenant in the transaction
-- (set_config('leadscore.tenant', T, true), serving/db.py `Db.tenant`) and row-level security shows only that
-- tenant's rows; a read that names none sees no row. A bug in our mapping therefore still cannot read another
-- tenant's lead through this login. The consent mirror is loaded tenant by tenant; the tenants it loads come from
-- serving.scoring_tenants(), which returns tenant names only, no lead data.

CREATE OR REPLACE FUNCTION compliance.reader_tenant() RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT nullif(current_setting('leadscore.tenant', true), '')
$$;

GRANT EXECUTE ON FUNCTION compliance.lead_tenant(text), compliance.reader_tenant() TO leadscore_serving;

DO $$
DECLARE
    tbl text;
BEGIN
    FOREACH tbl IN ARRAY ARRAY['compliance.consent', 'compliance.minors', 'text_store.messages', 'offline.labels',
                               'serving.text_signals'] LOOP
        EXECUTE format('DROP POLICY IF EXISTS serving_reads ON %s', tbl);
        EXECUTE format('CREATE POLICY serving_reads ON %s FOR SELECT TO leadscore_serving USING '
                       '(compliance.lead_tenant(lead_id) = compliance.reader_tenant())', tbl);
    END LOOP;
END $$;

-- the tenants that hold a granted scoring consent: names only (what the mirror and the batch job load, one
-- tenant at a time); runs with its owner's rights, so it sees every row to count them
CREATE OR REPLACE FUNCTION serving.scoring_tenants() RETURNS SETOF text
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT DISTINCT compliance.lead_tenant(lead_id) FROM compliance.consent
    WHERE purpose = 'scoring' AND granted ORDER BY 1
$$;

REVOKE ALL ON FUNCTION serving.scoring_tenants() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION serving.scoring_tenants() TO leadscore_serving;
