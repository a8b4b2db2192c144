-- Every change to a scoring consent is announced on channel `leadscore_consent`, so the scoring service can keep
-- an in-memory copy of who may be scored and drop a withdrawal the moment it commits (serving/consent.py).
-- One notification per statement: the changed lead ids, comma separated, or '*' ("re-read everything") when a
-- statement changed more than 100 of them or emptied the table (a payload must stay under 8,000 bytes).
-- NOTIFY is transactional: listeners hear of a change only once it is committed.

CREATE OR REPLACE FUNCTION compliance.announce_consent_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    ids text[];
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM pg_notify('leadscore_consent', '*');
        RETURN NULL;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT array_agg(DISTINCT lead_id) INTO ids FROM old_rows WHERE purpose = 'scoring';
    ELSE
        SELECT array_agg(DISTINCT lead_id) INTO ids FROM new_rows WHERE purpose = 'scoring';
    END IF;
    IF ids IS NULL THEN
        RETURN NULL;
    ELSIF cardinality(ids) > 100 THEN
        PERFORM pg_notify('leadscore_consent', '*');
    ELSE
        PERFORM pg_notify('leadscore_consent', array_to_string(ids, ','));
    END IF;
    RETURN NULL;
END;
$$;

DROP TRIGGER IF EXISTS consent_inserted ON compliance.consent;
CREATE TRIGGER consent_inserted AFTER INSERT ON compliance.consent
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION compliance.announce_consent_change();
DROP TRIGGER IF EXISTS consent_updated ON compliance.consent;
CREATE TRIGGER consent_updated AFTER UPDATE ON compliance.consent
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION compliance.announce_consent_change();
DROP TRIGGER IF EXISTS consent_deleted ON compliance.consent;
CREATE TRIGGER consent_deleted AFTER DELETE ON compliance.consent
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION compliance.announce_consent_change();
DROP TRIGGER IF EXISTS consent_truncated ON compliance.consent;
CREATE TRIGGER consent_truncated AFTER TRUNCATE ON compliance.consent
    FOR EACH STATEMENT EXECUTE FUNCTION compliance.announce_consent_change();
