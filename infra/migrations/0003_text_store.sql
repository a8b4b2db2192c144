-- Text store for the embedding re-ranker: lead messages and call notes, written by the stream workers.
-- `text` is kept only when the lead consented to `text_analysis`; otherwise the row records that a message
-- happened (for counts and audit) with text NULL. Embeddings (all-MiniLM-L6-v2, 384 dims) are filled in batches
-- by `leadscore stream embed`.
CREATE TABLE IF NOT EXISTS text_store.messages (
    event_id     text        PRIMARY KEY,
    lead_id      text        NOT NULL,
    kind         text        NOT NULL CHECK (kind IN ('whatsapp', 'sms', 'call_note')),
    direction    text        NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    sent_at      timestamptz NOT NULL,
    text         text,
    embedding    vector(384),
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS messages_lead_idx ON text_store.messages (lead_id, sent_at);
CREATE INDEX IF NOT EXISTS messages_unembedded_idx ON text_store.messages (created_at)
    WHERE embedding IS NULL AND text IS NOT NULL;
CREATE INDEX IF NOT EXISTS messages_embedding_hnsw ON text_store.messages USING hnsw (embedding vector_cosine_ops);
