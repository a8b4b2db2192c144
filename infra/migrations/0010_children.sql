-- Children (DPDP Act s.9; compliance/children.py): leads shown under 18 by a spec's age or date-of-birth feature,
-- and the purpose under which a verified parent or guardian consents for them.
ALTER TABLE compliance.consent DROP CONSTRAINT IF EXISTS consent_purpose_check;
ALTER TABLE compliance.consent ADD CONSTRAINT consent_purpose_check
    CHECK (purpose IN ('scoring', 'marketing_contact', 'text_analysis', 'parental_consent'));

CREATE TABLE IF NOT EXISTS compliance.minors (
    lead_id      text        PRIMARY KEY,
    dataset      text        NOT NULL,
    adult_from   timestamptz NOT NULL,                 -- when the lead comes of age
    recorded_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE compliance.minors IS 'Leads under 18 (from a spec''s age or date of birth): no profiling without parental consent';

-- The scoring service's consent mirror hears of parental consent and of minors too (0005 announced scoring only).
CREATE OR REPLACE FUNCTION compliance.announce_consent_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    ids text[];
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM pg_notify('leadscore_consent', '*');
        RETURN NULL;
    ELSIF TG_TABLE_NAME = 'minors' THEN
        IF TG_OP = 'DELETE' THEN
            SELECT array_agg(DISTINCT lead_id) INTO ids FROM old_rows;
        ELSE
            SELECT array_agg(DISTINCT lead_id) INTO ids FROM new_rows;
        END IF;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT array_agg(DISTINCT lead_id) INTO ids FROM old_rows WHERE purpose IN ('scoring', 'parental_consent');
    ELSE
        SELECT array_agg(DISTINCT lead_id) INTO ids FROM new_rows WHERE purpose IN ('scoring', 'parental_consent');
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

DROP TRIGGER IF EXISTS minors_inserted ON compliance.minors;
CREATE TRIGGER minors_inserted AFTER INSERT ON compliance.minors
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION compliance.announce_consent_change();
DROP TRIGGER IF EXISTS minors_updated ON compliance.minors;
CREATE TRIGGER minors_updated AFTER UPDATE ON compliance.minors
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION compliance.announce_consent_change();
DROP TRIGGER IF EXISTS minors_deleted ON compliance.minors;
CREATE TRIGGER minors_deleted AFTER DELETE ON compliance.minors
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION compliance.announce_consent_change();
