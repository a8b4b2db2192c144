-- Step 12, the console (serving/console): its own login role and its server-side sessions.
-- leadscore_console reads lead data only as leadscore_tenant (0012) for the signed-in person's tenant
-- (compliance.tenants.tenant_reads: SET LOCAL ROLE + leadscore.tenant), so a bug in a page that asks for another
-- tenant's lead still gets no row; it does not inherit that role's grants outside such a transaction. Its only
-- other rights are over its sessions. Its password is set by `leadscore infra up` (infra/roles.py).
SELECT leadscore_meta.create_login_role('leadscore_console');
GRANT leadscore_tenant TO leadscore_console WITH INHERIT FALSE, SET TRUE;

-- One row per signed-in browser: the session id is kept only as its SHA-256 (a stolen table opens no session);
-- who signed in (the account or key id, never a lead), their tenant, broker and role, the form token (CSRF).
CREATE TABLE IF NOT EXISTS serving.console_sessions (
    id_sha256   text        PRIMARY KEY,
    subject     text        NOT NULL,
    tenant      text        NOT NULL,
    broker      text,
    role        text        NOT NULL CHECK (role IN ('broker', 'manager', 'data_scientist', 'privacy_officer')),
    csrf        text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS console_sessions_expiry_idx ON serving.console_sessions (expires_at);
COMMENT ON TABLE serving.console_sessions IS 'Console sign-ins (serving/console/sessions.py): no lead data';

GRANT USAGE ON SCHEMA serving TO leadscore_console;
GRANT SELECT, INSERT, DELETE ON serving.console_sessions TO leadscore_console;
