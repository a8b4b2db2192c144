-- Scale (step 11): `leadscore score-batch` scores every consenting lead the online store holds, in bulk (one
-- process, or Ray Data), into serving.batch_scores, a table a CRM reads (the newest run per tenant). It runs as the
-- scoring path does, as leadscore_serving (it reads consent and online features), which may append here and
-- nothing more. A lead's rows go with it on erasure (every table with a lead_id column is reached).

CREATE TABLE IF NOT EXISTS serving.batch_scores (
    run_id         text             NOT NULL,
    scored_at      timestamptz      NOT NULL,
    tenant         text             NOT NULL,
    lead_id        text             NOT NULL,
    model_name     text             NOT NULL,
    model_version  text             NOT NULL,
    score          double precision NOT NULL,
    tier           text             NOT NULL,
    PRIMARY KEY (run_id, lead_id)
);
CREATE INDEX IF NOT EXISTS batch_scores_tenant_idx ON serving.batch_scores (tenant, scored_at DESC);
COMMENT ON TABLE serving.batch_scores IS 'Bulk scores of consenting leads per run (leadscore score-batch); erased with the lead';

SELECT compliance.protect_tenant('serving.batch_scores');
GRANT INSERT ON serving.batch_scores TO leadscore_serving;
DROP POLICY IF EXISTS serving_appends ON serving.batch_scores;
CREATE POLICY serving_appends ON serving.batch_scores FOR INSERT TO leadscore_serving WITH CHECK (true);
GRANT SELECT, DELETE ON serving.batch_scores TO leadscore_privacy;  -- export and erasure
