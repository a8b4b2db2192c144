-- Security (step 9, least privilege): training (`leadscore train`, the monitor's retrain, `leadscore rerank fit`)
-- logs in as leadscore_train instead of the owner. It reads what a training set is built from (every offline
-- table, those of datasets ingested later too; consent, minors, the ingest runs, the Feast registry), records the
-- run's lineage and reference rows and the re-ranker's text signals; nothing else: no DDL, no UPDATE or DELETE of
-- lead data, the logs, keys, consent or the ledger. Its password is set by `leadscore infra up` from the secret
-- pg_train (infra/roles.py).

SELECT leadscore_meta.create_login_role('leadscore_train');  -- 0014

GRANT USAGE ON SCHEMA offline, compliance, monitoring, serving, text_store, public TO leadscore_train;
GRANT SELECT ON ALL TABLES IN SCHEMA offline TO leadscore_train;
ALTER DEFAULT PRIVILEGES IN SCHEMA offline GRANT SELECT ON TABLES TO leadscore_train;  -- tables ingest makes
GRANT SELECT ON compliance.consent, compliance.minors, compliance.erasure_list TO leadscore_train;
GRANT SELECT, INSERT ON compliance.lineage TO leadscore_train;
GRANT SELECT, INSERT, DELETE ON monitoring.reference_rows TO leadscore_train;  -- a run's rows, replaced on a rerun
GRANT USAGE ON ALL SEQUENCES IN SCHEMA monitoring TO leadscore_train;
GRANT SELECT ON text_store.messages TO leadscore_train;  -- the re-ranker's fit: embeddings and their leads
GRANT SELECT, INSERT, UPDATE ON serving.text_signals TO leadscore_train;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO leadscore_train;  -- the Feast registry
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO leadscore_train;

-- the point-in-time join's index (pipelines/training_set.py) is made by the tables' owner: here for the views'
-- own tables, by ingest for a dataset's table; the training login cannot make one
CREATE INDEX IF NOT EXISTS lead_demographics_pit_idx ON offline.lead_demographics
    (lead_id, event_timestamp DESC, created_at DESC);
CREATE INDEX IF NOT EXISTS lead_engagement_pit_idx ON offline.lead_engagement
    (lead_id, event_timestamp DESC, created_at DESC);
CREATE INDEX IF NOT EXISTS market_context_pit_idx ON offline.market_context
    (city, event_timestamp DESC, created_at DESC);
DO $$
DECLARE
    t record;
BEGIN  -- datasets' tables ingested before this migration
    FOR t IN SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'offline' AND c.relkind = 'r'
               AND (SELECT count(*) FROM pg_attribute a WHERE a.attrelid = c.oid AND NOT a.attisdropped
                    AND a.attname IN ('lead_id', 'event_timestamp', 'created_at')) = 3
    LOOP
        EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON offline.%I (lead_id, event_timestamp DESC, created_at DESC)',
                       left(t.relname || '_pit_idx', 63), t.relname);
    END LOOP;
END $$;

-- row-level security: training learns from every tenant's leads it is told to (the run records which), so it
-- reads every row of the lead tables and writes the rows it owns (reference rows, text signals): its policy
-- `train_rows` is added by compliance.protect_tenant as 0023 defines it, to every lead table
