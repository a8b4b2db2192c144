-- Security (step 9, least privilege): the scoring path logs in as leadscore_serving, not as the owner.
-- It reads what scoring needs (consent, minors, API keys, message vectors, labels for the re-ranker's neighbours,
-- the re-ranker's signals, the Feast registry) and appends to the prediction log and the audit log; nothing else:
-- no UPDATE or DELETE anywhere, no offline feature tables, no DDL. Its password is set by `leadscore infra up`
-- from the state directory's secrets (infra/roles.py), never written here. The privacy routes that the same
-- service hosts (erasure, export, consent changes) still use the owner's login: they reach every store.

-- a component's login role: no superuser, database or role creation, replication or RLS bypass (its password is
-- set by infra/roles.py); the components' migrations (this one, 0015) and infra/roles.py (MLflow's) make theirs so
CREATE OR REPLACE FUNCTION leadscore_meta.create_login_role(name text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = name) THEN
        EXECUTE format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS', name);
    END IF;
END $$;

SELECT leadscore_meta.create_login_role('leadscore_serving');

GRANT USAGE ON SCHEMA compliance, serving, text_store, offline TO leadscore_serving;
GRANT SELECT ON compliance.consent, compliance.minors TO leadscore_serving;
GRANT SELECT ON serving.api_keys, serving.text_signals TO leadscore_serving;
GRANT SELECT ON text_store.messages, offline.labels TO leadscore_serving;
GRANT INSERT ON serving.prediction_log, compliance.audit_log TO leadscore_serving;
GRANT USAGE ON SEQUENCE serving.prediction_log_id_seq, compliance.audit_log_id_seq TO leadscore_serving;

-- the Feast registry (feature views and services; no lead data) lives in schema public, its tables made by
-- `feast apply` (as the owner) after this migration: read access to those that exist and to those to come
GRANT USAGE ON SCHEMA public TO leadscore_serving;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO leadscore_serving;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO leadscore_serving;

-- row-level security (0012) denies a role without a policy every row: the scoring service serves every tenant
-- (the API maps each key to its tenant's leads), so it reads these tables' rows and appends log rows of any tenant
DO $$
DECLARE
    tbl text;
BEGIN
    FOREACH tbl IN ARRAY ARRAY['compliance.consent', 'compliance.minors', 'text_store.messages', 'offline.labels',
                               'serving.text_signals'] LOOP
        EXECUTE format('DROP POLICY IF EXISTS serving_reads ON %s', tbl);
        EXECUTE format('CREATE POLICY serving_reads ON %s FOR SELECT TO leadscore_serving USING (true)', tbl);
    END LOOP;
    FOREACH tbl IN ARRAY ARRAY['serving.prediction_log', 'compliance.audit_log'] LOOP
        EXECUTE format('DROP POLICY IF EXISTS serving_appends ON %s', tbl);
        EXECUTE format('CREATE POLICY serving_appends ON %s FOR INSERT TO leadscore_serving WITH CHECK (true)', tbl);
    END LOOP;
END $$;
