-- The re-ranker looks for neighbours among leads' own (inbound) messages only (serving/reranker.py): a partial
-- HNSW index over them, so the nearest inbound messages are found without walking the broker's outbound ones.
CREATE INDEX IF NOT EXISTS messages_inbound_hnsw ON text_store.messages
    USING hnsw (embedding vector_cosine_ops) WHERE direction = 'inbound';
