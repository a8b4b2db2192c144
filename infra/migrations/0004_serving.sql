-- Serving (step 5): API keys, the prediction log, and the outcome view the re-ranker reads.

-- API keys: the secret is never stored, only an HMAC-SHA256 of it under a server-side pepper
-- (.leadscore/secrets/api_key_pepper.password). A key is `ls_<key_id>_<secret>`; key_id finds the row.
CREATE TABLE IF NOT EXISTS serving.api_keys (
    key_id       text        PRIMARY KEY,
    tenant       text        NOT NULL,               -- the broker firm or CRM the key belongs to
    broker       text,                               -- optional: one broker inside the tenant
    secret_hmac  text        NOT NULL,
    rate_per_s   real        NOT NULL DEFAULT 200 CHECK (rate_per_s > 0),
    burst        integer     NOT NULL DEFAULT 400 CHECK (burst > 0),
    description  text        NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz
);
COMMENT ON TABLE serving.api_keys IS 'Scoring API keys: hashed at rest (HMAC), scoped to a tenant/broker, rate limited';

-- Every score served: who asked, which lead, which model version, what came out. Written in batches (COPY)
-- off the request path by the scoring service.
CREATE TABLE IF NOT EXISTS serving.prediction_log (
    id              bigserial   PRIMARY KEY,
    at              timestamptz NOT NULL,
    endpoint        text        NOT NULL CHECK (endpoint IN ('score', 'rank')),
    request_id      text        NOT NULL,
    key_id          text        NOT NULL,
    tenant          text        NOT NULL,
    lead_id         text        NOT NULL,
    model_name      text        NOT NULL,
    model_version   text        NOT NULL,
    feature_service text        NOT NULL,
    score           double precision NOT NULL,
    tier            text        NOT NULL,
    text_signal     double precision,
    rank_score      double precision,
    inline_features integer     NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS prediction_log_lead_idx ON serving.prediction_log (lead_id, at);
CREATE INDEX IF NOT EXISTS prediction_log_at_idx ON serving.prediction_log (at);
COMMENT ON TABLE serving.prediction_log IS 'Each score served (who, which lead, which model version, score)';

-- Message neighbours need each past lead's outcome: one row per lead, the latest label of any dataset.
CREATE INDEX IF NOT EXISTS labels_lead_idx ON offline.labels (lead_id, event_timestamp DESC);

-- The re-ranker's text-intent signal per lead, precomputed from the lead's stored message embeddings (nearest
-- neighbours among past leads with known outcomes) by the re-ranker's fitting job; /rank reads it in one query and
-- computes it at request time only for leads that send new text.
CREATE TABLE IF NOT EXISTS serving.text_signals (
    lead_id          text        PRIMARY KEY,
    signal           double precision NOT NULL,
    n_messages       integer     NOT NULL,
    reranker_version text        NOT NULL,
    computed_at      timestamptz NOT NULL DEFAULT now()
);
