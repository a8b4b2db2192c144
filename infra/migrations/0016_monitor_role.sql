-- Security (step 9, least privilege): the monitor logs in as leadscore_monitor: drift and realized quality
-- (`leadscore monitor drift|performance|run|watch`), the loop's decisions and the Prometheus exporter that answers
-- on its own port. It reads the prediction log, labels, consent, the reference rows that training wrote, the stream
-- table's newest time (feature freshness) and the erasure lineage (the erasure-debt gauge); it adds results and
-- decisions and appends to the audit log; nothing else: no UPDATE or DELETE, no feature table, no DDL. The
-- retraining the loop may start runs the training job, which logs in as `leadscore train` does.
-- Its password is set by `leadscore infra up` from the secret pg_monitor (infra/roles.py).

SELECT leadscore_meta.create_login_role('leadscore_monitor');  -- 0014

GRANT USAGE ON SCHEMA serving, offline, compliance, monitoring TO leadscore_monitor;
GRANT SELECT ON serving.prediction_log, offline.labels, offline.lead_engagement, monitoring.reference_rows,
    compliance.consent, compliance.lineage, compliance.erasure_list TO leadscore_monitor;
GRANT SELECT, INSERT ON monitoring.results TO leadscore_monitor;
GRANT INSERT ON compliance.audit_log TO leadscore_monitor;
GRANT USAGE ON SEQUENCE monitoring.results_id_seq, compliance.audit_log_id_seq TO leadscore_monitor;

-- row-level security (0012): the monitor judges a model over every tenant it scored, so it reads every tenant's
-- rows of the lead tables above, and only reads them
DO $$
DECLARE
    tbl text;
BEGIN
    FOREACH tbl IN ARRAY ARRAY['serving.prediction_log', 'offline.labels', 'offline.lead_engagement',
                               'monitoring.reference_rows', 'compliance.consent'] LOOP
        EXECUTE format('DROP POLICY IF EXISTS monitor_reads ON %s', tbl);
        EXECUTE format('CREATE POLICY monitor_reads ON %s FOR SELECT TO leadscore_monitor USING (true)', tbl);
    END LOOP;
    DROP POLICY IF EXISTS monitor_appends ON compliance.audit_log;
    CREATE POLICY monitor_appends ON compliance.audit_log FOR INSERT TO leadscore_monitor WITH CHECK (true);
END $$;
