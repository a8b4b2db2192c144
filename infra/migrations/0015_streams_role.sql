-- Security (step 9, least privilege): the stream workers and the embedder log in as leadscore_streams.
-- They read consent, minors and the erasure list (the worker's consent cache) and the Feast registry; they upsert
-- engagement rows and stream labels, add messages, and fill in message embeddings; nothing else: no DELETE, no
-- other table, no DDL. Temporary staging tables of their own connection are theirs (COPY, then INSERT ... SELECT).
-- Its password is set by `leadscore infra up` from the secret pg_streams (infra/roles.py).

SELECT leadscore_meta.create_login_role('leadscore_streams');  -- 0014

GRANT USAGE ON SCHEMA compliance, offline, text_store, public TO leadscore_streams;
GRANT SELECT ON compliance.consent, compliance.minors, compliance.erasure_list TO leadscore_streams;
GRANT SELECT, INSERT, UPDATE ON offline.lead_engagement, offline.labels TO leadscore_streams;
GRANT SELECT, INSERT ON text_store.messages TO leadscore_streams;
GRANT UPDATE (embedding) ON text_store.messages TO leadscore_streams;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO leadscore_streams;  -- the Feast registry
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO leadscore_streams;

-- row-level security (0012): the workers serve every tenant (an event's tenant is in its lead id)
DO $$
DECLARE
    tbl text;
BEGIN
    FOREACH tbl IN ARRAY ARRAY['compliance.consent', 'compliance.minors', 'offline.lead_engagement',
                               'offline.labels', 'text_store.messages'] LOOP
        EXECUTE format('DROP POLICY IF EXISTS streams_rows ON %s', tbl);
        EXECUTE format('CREATE POLICY streams_rows ON %s TO leadscore_streams USING (true) WITH CHECK (true)', tbl);
    END LOOP;
END $$;
