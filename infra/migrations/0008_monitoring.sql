-- Monitoring (step 7): what the service really scored, what each model version was trained on, and the monitor's
-- results over time. Every row that describes a lead is keyed by lead_id, so erasure reaches it.
CREATE SCHEMA IF NOT EXISTS monitoring;
COMMENT ON SCHEMA monitoring IS 'Served features, per-version training references and monitor results';

-- The features each score was computed from (the stored row merged with inline overrides, exactly as the model
-- received them), logged with the score rather than reconstructed: the online store is overwritten as events
-- arrive, so what a lead looked like when it was scored cannot be read back later. NULL when not sampled
-- (LEADSCORE_FEATURE_LOG_SAMPLE).
ALTER TABLE serving.prediction_log ADD COLUMN IF NOT EXISTS features jsonb;

-- The rows (or a uniform sample) a model version was trained and tested on, with the registered model's score of
-- each: the reference its served features are compared with. A version is found by its training run.
CREATE TABLE IF NOT EXISTS monitoring.reference_rows (
    id               bigserial   PRIMARY KEY,
    model_name       text        NOT NULL,
    run_id           text        NOT NULL,
    part             text        NOT NULL CHECK (part IN ('train', 'test')),
    lead_id          text        NOT NULL,
    event_timestamp  timestamptz NOT NULL,
    label            smallint    NOT NULL,
    score            double precision NOT NULL,
    features         jsonb       NOT NULL
);
CREATE INDEX IF NOT EXISTS reference_rows_run_idx ON monitoring.reference_rows (model_name, run_id);
CREATE INDEX IF NOT EXISTS reference_rows_lead_idx ON monitoring.reference_rows (lead_id);
COMMENT ON TABLE monitoring.reference_rows IS 'Training reference per model version (keyed by lead for erasure)';

-- One row per monitor result (a drift report or a cohort's realized quality): the history the watch loop reads
-- to decide whether drift is sustained. Aggregates only, no lead ids.
CREATE TABLE IF NOT EXISTS monitoring.results (
    id              bigserial   PRIMARY KEY,
    at              timestamptz NOT NULL DEFAULT now(),
    kind            text        NOT NULL CHECK (kind IN ('drift', 'performance', 'decision')),
    model_name      text        NOT NULL,
    model_version   text        NOT NULL,
    window_start    timestamptz,
    window_end      timestamptz,
    rows            bigint      NOT NULL DEFAULT 0,
    drifted         boolean,
    summary         jsonb       NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX IF NOT EXISTS results_model_idx ON monitoring.results (model_name, kind, at);

-- The monitor's freshness gauge of a stream-fed view reads its latest row: an index makes that one probe.
CREATE INDEX IF NOT EXISTS lead_engagement_event_time_idx ON offline.lead_engagement (event_timestamp);
