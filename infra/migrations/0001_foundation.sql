-- LeadScore foundation: extensions and the schemas every later step builds on.
-- Applied once by `leadscore infra up` (infra/migrate.py), inside a transaction, recorded in
-- leadscore_meta.schema_migrations with its checksum. Add new files; never edit an applied one.

CREATE EXTENSION IF NOT EXISTS vector;      -- pgvector: message embeddings for the re-ranker

-- Feast's offline store: feature tables, labels, CRM ingests and their rejects.
CREATE SCHEMA IF NOT EXISTS offline;
COMMENT ON SCHEMA offline IS 'Feast offline store: per-lead feature rows with event timestamps, labels, ingests';

-- DPDP Act compliance: consent per purpose, and an append-only audit trail.
CREATE SCHEMA IF NOT EXISTS compliance;
COMMENT ON SCHEMA compliance IS 'Consent per lead and purpose, audit trail, erasure and retention bookkeeping';

CREATE TABLE IF NOT EXISTS compliance.consent (
    lead_id      text        NOT NULL,
    purpose      text        NOT NULL CHECK (purpose IN ('scoring', 'marketing_contact', 'text_analysis')),
    granted      boolean     NOT NULL,
    source       text        NOT NULL,               -- where the consent was captured (crm export, web form, ...)
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz,
    PRIMARY KEY (lead_id, purpose)
);
COMMENT ON TABLE compliance.consent IS 'Latest consent decision per lead and purpose (DPDP Act s.6)';

CREATE TABLE IF NOT EXISTS compliance.audit_log (
    id          bigserial   PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text        NOT NULL,                -- api key id, user or job name
    action      text        NOT NULL,                -- score, refuse, erase, export, consent_change, ...
    lead_id     text,
    purpose     text,
    detail      jsonb       NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX IF NOT EXISTS audit_log_lead_idx ON compliance.audit_log (lead_id, at);
COMMENT ON TABLE compliance.audit_log IS 'Append-only trail of who did what to which lead, and why';

-- Text store for the embedding re-ranker (messages, call notes) with their embeddings.
CREATE SCHEMA IF NOT EXISTS text_store;
COMMENT ON SCHEMA text_store IS 'Lead message text (only where consent allows) and all-MiniLM-L6-v2 embeddings';

-- Serving: the prediction log written in batches by the scoring service.
CREATE SCHEMA IF NOT EXISTS serving;
COMMENT ON SCHEMA serving IS 'Prediction log: who asked, which lead, which model version, which score';
