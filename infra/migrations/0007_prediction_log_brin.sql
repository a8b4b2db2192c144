-- The prediction log is appended in time order (COPY batches stamped with the call's time), so its time index
-- need not be a B-tree: a BRIN index keeps each block range's min and max time, is a few pages big, and costs
-- almost nothing per row written. /rank (1,000 log rows per call) measured 26,917 and 27,360 leads/s with it
-- against 25,913 and 26,338 with the B-tree, alternating, on a 4.5-million-row log (docs/serving.md).
DROP INDEX IF EXISTS serving.prediction_log_at_idx;
CREATE INDEX IF NOT EXISTS prediction_log_at_brin ON serving.prediction_log USING brin (at);
