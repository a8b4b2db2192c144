-- Security (step 9): the audit log and the consent ledger are append-only for every role but two jobs'.
-- The erasure job (compliance/erase.py) may replace a row's lead_id by the lead's token (or NULL) and change
-- nothing else; the retention job (compliance/retention.py) may delete audit rows past their keeping period.
-- Both switch to their role for that one statement (SET LOCAL ROLE), so a bug or a stolen application login
-- elsewhere cannot rewrite history. TRUNCATE is refused for everyone.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'leadscore_erasure') THEN
        CREATE ROLE leadscore_erasure NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'leadscore_retention') THEN
        CREATE ROLE leadscore_retention NOLOGIN;
    END IF;
END $$;

GRANT leadscore_erasure, leadscore_retention TO CURRENT_USER;
GRANT USAGE ON SCHEMA compliance TO leadscore_erasure, leadscore_retention;
GRANT SELECT, UPDATE (lead_id) ON compliance.audit_log, compliance.consent_ledger TO leadscore_erasure;
GRANT SELECT, DELETE ON compliance.audit_log TO leadscore_retention;

CREATE OR REPLACE FUNCTION compliance.keep_history() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND current_user = 'leadscore_erasure' THEN
        IF (to_jsonb(NEW) - 'lead_id') = (to_jsonb(OLD) - 'lead_id') THEN
            RETURN NEW;
        END IF;
    ELSIF TG_OP = 'DELETE' AND current_user = 'leadscore_retention' AND TG_TABLE_NAME = 'audit_log' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'compliance.% is append-only: % refused for role %', TG_TABLE_NAME, TG_OP, current_user
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'only the erasure job (replacing lead_id) and the retention job (purging old audit rows) '
                     'may change it';
END $$;

DO $$
DECLARE
    tbl text;
BEGIN
    FOREACH tbl IN ARRAY ARRAY['audit_log', 'consent_ledger'] LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS %I ON compliance.%I', tbl || '_append_only', tbl);
        EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE OR DELETE ON compliance.%I FOR EACH ROW '
                       'EXECUTE FUNCTION compliance.keep_history()', tbl || '_append_only', tbl);
        EXECUTE format('DROP TRIGGER IF EXISTS %I ON compliance.%I', tbl || '_no_truncate', tbl);
        EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON compliance.%I FOR EACH STATEMENT '
                       'EXECUTE FUNCTION compliance.keep_history()', tbl || '_no_truncate', tbl);
    END LOOP;
END $$;
