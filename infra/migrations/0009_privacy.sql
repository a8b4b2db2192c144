-- Privacy (step 8, DPDP Act 2023 and DPDP Rules 2025): the consent ledger, erasure, lineage and principal requests.
-- A lead's *token* is HMAC-SHA256(privacy_token key, lead_id), 32 hex characters (compliance/tokens.py): records
-- the law asks to keep after an erasure (consent proof, processing logs) keep the token, never the id.

-- Every consent change, append-only and hash-chained: entry_hash = sha256(prev_hash || the entry's canonical
-- JSON, which names the lead by its token). Erasure clears lead_id and keeps the chain verifiable.
CREATE TABLE IF NOT EXISTS compliance.consent_ledger (
    seq             bigint      PRIMARY KEY,
    at              timestamptz NOT NULL,
    lead_token      text        NOT NULL,
    lead_id         text,                                   -- NULL once the lead is erased
    purpose         text        NOT NULL,
    granted         boolean     NOT NULL,
    notice_version  text        NOT NULL,                   -- e.g. lead-processing@1
    channel         text        NOT NULL,                   -- crm_export, api, cli, consent_manager, withdrawal...
    recorded_by     text        NOT NULL,                   -- api key id, operator or job
    prev_hash       text        NOT NULL,
    entry_hash      text        NOT NULL
);
CREATE INDEX IF NOT EXISTS consent_ledger_lead_idx ON compliance.consent_ledger (lead_token, seq);
CREATE INDEX IF NOT EXISTS consent_ledger_id_idx ON compliance.consent_ledger (lead_id, purpose, seq);
COMMENT ON TABLE compliance.consent_ledger IS 'Append-only, hash-chained history of every consent change (s.6(10))';

-- The chain's head, signed with the ledger key (secrets directory): a deleted last entry is detected too.
CREATE TABLE IF NOT EXISTS compliance.ledger_head (
    id          boolean     PRIMARY KEY DEFAULT true CHECK (id),
    seq         bigint      NOT NULL,
    entry_hash  text        NOT NULL,
    signature   text        NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- The notice versions consent was given under (the texts live in compliance/notices/*.yaml; the digest pins them).
CREATE TABLE IF NOT EXISTS compliance.notices (
    notice_version  text        PRIMARY KEY,
    sha256          text        NOT NULL,
    languages       text[]      NOT NULL,
    purposes        text[]      NOT NULL,
    published_at    timestamptz NOT NULL DEFAULT now()
);

-- Erased leads, by token: stream workers and ingest refuse their events and rows from before the erasure, so a
-- replay of a topic or of an old export never brings an erased lead back.
CREATE TABLE IF NOT EXISTS compliance.erasure_list (
    lead_token  text        PRIMARY KEY,
    erased_at   timestamptz NOT NULL,
    request_id  text        NOT NULL
);
CREATE INDEX IF NOT EXISTS erasure_list_erased_at_idx ON compliance.erasure_list (erased_at);

-- One signed receipt per erasure request: per store, what was found before and after, probed independently.
CREATE TABLE IF NOT EXISTS compliance.erasure_receipts (
    request_id  text        PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now(),
    leads       integer     NOT NULL,
    receipt     jsonb       NOT NULL,
    signature   text        NOT NULL
);

-- Which leads each model version (its training run) learned from, by token: what `privacy erase` names and the
-- erasure-debt gauge counts.
CREATE TABLE IF NOT EXISTS compliance.lineage (
    model_name  text        NOT NULL,
    run_id      text        NOT NULL,
    lead_token  text        NOT NULL,
    PRIMARY KEY (run_id, lead_token)
);
CREATE INDEX IF NOT EXISTS lineage_token_idx ON compliance.lineage (lead_token);

-- Erasure finds a lead's rejected rows by id.
CREATE INDEX IF NOT EXISTS ingest_rejects_lead_idx ON offline.ingest_rejects (lead_id);

-- Every principal request (access, correction, erasure, grievance, and erasures queued by a withdrawal), with its
-- due date. lead_id is cleared when the lead is erased; the token stays.
CREATE TABLE IF NOT EXISTS compliance.requests (
    request_id   text        PRIMARY KEY,
    kind         text        NOT NULL CHECK (kind IN ('access', 'correction', 'erasure', 'grievance')),
    lead_token   text        NOT NULL,
    lead_id      text,
    received_at  timestamptz NOT NULL DEFAULT now(),
    due_at       timestamptz NOT NULL,
    status       text        NOT NULL CHECK (status IN ('open', 'queued', 'done', 'rejected')),
    channel      text        NOT NULL,
    closed_at    timestamptz,
    detail       jsonb       NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX IF NOT EXISTS requests_status_idx ON compliance.requests (status, due_at);
CREATE INDEX IF NOT EXISTS requests_lead_idx ON compliance.requests (lead_id);

-- Records kept for the legal year after an erasure (compliance.audit_log, serving.prediction_log) carry
-- 'tok_' || token in lead_id, and no features.

-- What each API key may do: score (/score, /rank), consent (/consent: CRMs and consent managers), privacy
-- (/privacy/*: erasure and export, a data-protection officer's key). Keys of tenant 'admin' may do everything.
ALTER TABLE serving.api_keys ADD COLUMN IF NOT EXISTS scopes text[] NOT NULL DEFAULT '{score}';

-- Retention (Rule 8(2)): the notice a lead is sent 48 hours before an erasure for inactivity or for its dataset's
-- retention period, the outbox the CRM delivers from (and a webhook, when configured). Kept, with lead_id cleared,
-- as proof the notice was given.
CREATE TABLE IF NOT EXISTS compliance.retention_notices (
    notice_id      text        PRIMARY KEY,
    lead_token     text        NOT NULL,
    lead_id        text,
    reason         text        NOT NULL,
    last_activity  timestamptz NOT NULL,
    noticed_at     timestamptz NOT NULL,
    erase_after    timestamptz NOT NULL,
    status         text        NOT NULL CHECK (status IN ('notified', 'cancelled', 'erased')),
    delivered      boolean     NOT NULL DEFAULT false,   -- the webhook accepted it
    closed_at      timestamptz
);
CREATE INDEX IF NOT EXISTS retention_notices_status_idx ON compliance.retention_notices (status, erase_after);
CREATE INDEX IF NOT EXISTS retention_notices_lead_idx ON compliance.retention_notices (lead_id);
