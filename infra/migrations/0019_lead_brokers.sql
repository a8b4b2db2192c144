-- Step 12: which broker each lead is assigned to (a CRM export's `broker_column`, pipelines/ingest_write.py), so a
-- broker signed into the console sees only their own leads. The broker is the CRM's opaque staff id, not data about
-- the lead; the row is still the lead's and keyed by it: erasure finds it with every other lead-keyed table
-- (compliance/stores.py), and row-level security by tenant covers it like the others (0012).
CREATE TABLE IF NOT EXISTS offline.lead_brokers (
    lead_id      text        PRIMARY KEY,
    broker       text        NOT NULL,
    dataset      text        NOT NULL,
    assigned_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS lead_brokers_broker_idx ON offline.lead_brokers (broker, lead_id);
COMMENT ON TABLE offline.lead_brokers IS 'The broker each lead is assigned to, from CRM exports (broker_column)';
SELECT compliance.protect_tenant('offline.lead_brokers');
