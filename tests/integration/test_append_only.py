"""The audit log and the consent ledger are append-only in PostgreSQL itself (infra/migrations/0011): the
application's own login cannot change or delete history; the erasure role may only replace a lead id, the
retention role may only purge audit rows; TRUNCATE is refused to all."""

from __future__ import annotations

import psycopg
import pytest

from infra.config import Settings

pytestmark = [pytest.mark.integration]


@pytest.fixture
def conn(settings: Settings):  # noqa: ANN201 - a connection whose work is rolled back at the end
    with psycopg.connect(settings.pg_dsn()) as connection:
        connection.execute("INSERT INTO compliance.audit_log (actor, action, lead_id, detail) VALUES "
                           "('it-append-only', 'probe', 'it-append-only-lead', '{}')")
        connection.execute("INSERT INTO compliance.consent_ledger (seq, at, lead_token, lead_id, purpose, granted, "
                           "notice_version, channel, recorded_by, prev_hash, entry_hash) VALUES (-42, now(), "
                           "'tok', 'it-append-only-lead', 'scoring', true, 'x@1', 'test', 'test', '', '')")
        yield connection
        connection.rollback()


def _refused(conn, sql: str) -> str:  # noqa: ANN001
    with pytest.raises(psycopg.errors.InsufficientPrivilege) as caught, conn.transaction():
        conn.execute(sql)
    return str(caught.value)


@pytest.mark.parametrize("sql", [
    "DELETE FROM compliance.audit_log WHERE actor = 'it-append-only'",
    "UPDATE compliance.audit_log SET action = 'nothing' WHERE actor = 'it-append-only'",
    "TRUNCATE compliance.audit_log",
    "UPDATE compliance.consent_ledger SET granted = NOT granted WHERE seq = -42",
    "DELETE FROM compliance.consent_ledger WHERE seq = -42",
    "TRUNCATE compliance.consent_ledger",
])
def test_the_applications_own_login_cannot_change_history(conn, sql: str) -> None:  # noqa: ANN001
    assert "append-only" in _refused(conn, sql)


def test_only_the_erasure_role_replaces_a_lead_id_and_only_the_retention_role_purges(conn) -> None:  # noqa: ANN001
    with conn.transaction():
        conn.execute("SET LOCAL ROLE leadscore_erasure")
        assert conn.execute("UPDATE compliance.audit_log SET lead_id = 'tok_x' WHERE actor = 'it-append-only'"
                            ).rowcount == 1
        assert conn.execute("UPDATE compliance.consent_ledger SET lead_id = NULL WHERE seq = -42").rowcount == 1
        conn.execute("RESET ROLE")
    for role, sql in (("leadscore_erasure", "DELETE FROM compliance.audit_log WHERE actor = 'it-append-only'"),
                      ("leadscore_erasure", "UPDATE compliance.audit_log SET action = 'x' WHERE actor = "
                                            "'it-append-only'"),
                      ("leadscore_retention", "UPDATE compliance.audit_log SET lead_id = NULL WHERE actor = "
                                              "'it-append-only'"),
                      ("leadscore_retention", "DELETE FROM compliance.consent_ledger WHERE seq = -42")):
        assert "permission denied" in _refused(conn, f"SET LOCAL ROLE {role}; {sql}"), (role, sql)
    with conn.transaction():
        conn.execute("SET LOCAL ROLE leadscore_retention")
        assert conn.execute("DELETE FROM compliance.audit_log WHERE actor = 'it-append-only'").rowcount == 1
