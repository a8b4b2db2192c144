-- Reliability (step 10): every ingest run's end is recorded, whether it succeeds or fails: status (running, done,
-- failed) and, for a failure, the reason in one line (pipelines/ingest.py).
ALTER TABLE offline.ingest_runs ADD COLUMN IF NOT EXISTS status text NOT NULL DEFAULT 'running';
ALTER TABLE offline.ingest_runs ADD COLUMN IF NOT EXISTS reason text;
UPDATE offline.ingest_runs SET status = 'done' WHERE finished_at IS NOT NULL AND status = 'running';
UPDATE offline.ingest_runs SET status = 'failed', finished_at = started_at,
    reason = 'ended before migration 0013 recorded how' WHERE finished_at IS NULL AND status = 'running';
