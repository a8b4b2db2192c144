"""Least privilege in PostgreSQL (issue #16): the scoring path's login role reads what scoring needs, appends to
the prediction log and the audit log, and is refused everything else."""

from __future__ import annotations

import psycopg
import pytest

from infra.config import Settings

pytestmark = [pytest.mark.integration]

ACME, OTHER = "acme/ROLE-1", "ROLE-2"


@pytest.fixture(scope="module")
def serving_conn(settings: Settings, applied_store) -> psycopg.Connection:  # noqa: ANN001 - the registry exists
    with psycopg.connect(settings.pg_dsn(), autocommit=True) as owner:
        for lead in (ACME, OTHER):
            owner.execute("INSERT INTO compliance.consent (lead_id, purpose, granted, source) VALUES (%s, 'scoring', "
                          "true, 'test') ON CONFLICT (lead_id, purpose) DO UPDATE SET granted = true", (lead,))
    with psycopg.connect(settings.pg_dsn(role="serving"), autocommit=True) as conn:
        yield conn


def test_the_role_is_its_own_login_without_privileges_of_its_own(serving_conn) -> None:  # noqa: ANN001
    row = serving_conn.execute("SELECT current_user, rolsuper, rolcreatedb, rolcreaterole, rolbypassrls FROM "
                               "pg_roles WHERE rolname = current_user").fetchone()
    assert row == ("leadscore_serving", False, False, False, False)


def test_it_reads_consent_one_tenant_at_a_time_and_appends_to_the_logs(serving_conn) -> None:  # noqa: ANN001
    from serving.db import Db

    ask = "SELECT lead_id FROM compliance.consent WHERE lead_id = ANY(%s)"
    assert serving_conn.execute(ask, ([ACME, OTHER],)).fetchall() == []  # a read that names no tenant: no row
    for tenant, lead in (("acme", ACME), ("default", OTHER)):  # each tenant's own lead only, though both asked for
        with Db.tenant(serving_conn, tenant):
            assert {r[0] for r in serving_conn.execute(ask, ([ACME, OTHER],))} == {lead}
    serving_conn.execute("INSERT INTO compliance.audit_log (actor, action, lead_id, purpose) VALUES ('test', 'refuse', "
                         "%s, 'scoring')", (OTHER,))
    serving_conn.execute("""INSERT INTO serving.prediction_log (at, endpoint, request_id, key_id, tenant, lead_id,
        model_name, model_version, feature_service, score, tier) VALUES (now(), 'score', 'r', 'k', 'default', %s, 'm',
        '1', 'fs', 0.5, 'B')""", (OTHER,))
    assert serving_conn.execute("SELECT count(*) FROM feature_services").fetchone()[0] >= 1  # the Feast registry


@pytest.mark.parametrize("statement", [
    "UPDATE compliance.consent SET granted = false",
    "INSERT INTO compliance.consent (lead_id, purpose, granted, source) VALUES ('x', 'scoring', true, 'x')",
    "DELETE FROM compliance.consent",
    "DELETE FROM compliance.audit_log",
    "UPDATE compliance.audit_log SET actor = 'x'",
    "SELECT count(*) FROM serving.prediction_log",  # what was served is the monitor's to read, not the scorer's
    "DELETE FROM serving.prediction_log",
    "SELECT count(*) FROM compliance.consent_ledger",
    "SELECT count(*) FROM offline.lead_engagement",  # features come from Redis
    "UPDATE serving.api_keys SET revoked_at = NULL",
    "INSERT INTO serving.api_keys (key_id, tenant, secret_hmac) VALUES ('x', 'x', 'x')",
    "CREATE TABLE public.planted (x int)",
    "CREATE TABLE offline.planted (x int)",
    "DROP TABLE compliance.consent",
    "TRUNCATE serving.prediction_log",
    "DELETE FROM feature_services",
    "SET ROLE leadscore_erasure",
])
def test_everything_else_is_refused(serving_conn, statement: str) -> None:  # noqa: ANN001
    with pytest.raises(psycopg.errors.InsufficientPrivilege), serving_conn.transaction():
        serving_conn.execute(statement)


def test_it_cannot_reach_the_registrys_database(settings: Settings, serving_conn) -> None:  # noqa: ANN001
    with pytest.raises(psycopg.OperationalError, match="permission denied"):
        psycopg.connect(settings.pg_dsn(settings.mlflow_db, role="serving"), connect_timeout=5)


def test_the_registry_server_logs_in_as_its_own_role_which_reaches_no_lead(settings: Settings) -> None:
    """MLflow's role owns MLflow's database (every table in it) and cannot connect to LeadScore's; the running
    MLflow server's connections are that role's."""
    from mlflow import MlflowClient

    MlflowClient(settings.tracking_uri).search_experiments(max_results=1)  # the server holds a connection now
    with psycopg.connect(settings.pg_dsn(settings.mlflow_db)) as conn:
        owners = {r[0] for r in conn.execute("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'")}
        users = {r[0] for r in conn.execute("SELECT DISTINCT usename FROM pg_stat_activity WHERE datname = %s AND "
                                            "pid <> pg_backend_pid()", (settings.mlflow_db,))}
    assert owners == {"leadscore_mlflow"}
    assert users == {"leadscore_mlflow"}
    with pytest.raises(psycopg.OperationalError, match="permission denied"):
        psycopg.connect(settings.pg_dsn(role="mlflow"), connect_timeout=5)


@pytest.mark.parametrize("statement", [
    "DELETE FROM offline.lead_engagement",
    "DELETE FROM text_store.messages",
    "UPDATE text_store.messages SET text = 'x'",  # only the embedding may be filled in
    "UPDATE compliance.consent SET granted = true",
    "INSERT INTO compliance.erasure_list (lead_token, erased_at, request_id) VALUES ('x', now(), 'x')",
    "SELECT count(*) FROM serving.prediction_log",
    "SELECT count(*) FROM serving.api_keys",
    "INSERT INTO compliance.audit_log (actor, action) VALUES ('x', 'x')",
    "CREATE TABLE offline.planted (x int)",
    "DROP TABLE offline.labels",
])
def test_the_stream_role_is_refused_what_the_workers_never_do(settings: Settings, statement: str) -> None:
    with psycopg.connect(settings.pg_dsn(role="streams"), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM compliance.consent").fetchone()[0] >= 0
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)


def test_the_monitor_reads_every_tenants_log_and_only_adds_results(settings: Settings, serving_conn) -> None:  # noqa: ANN001
    """The monitor's role sees the prediction log of every tenant (it judges a model over all it scored), adds a
    result and an audit row, and owns nothing it could change afterwards."""
    model = "role-test-model"
    with psycopg.connect(settings.pg_dsn(), autocommit=True) as owner:
        owner.execute("DELETE FROM monitoring.results WHERE model_name = %s", (model,))
        owner.execute("DELETE FROM serving.prediction_log WHERE model_name = %s", (model,))
        for lead in (ACME, OTHER):
            owner.execute("INSERT INTO serving.prediction_log (at, endpoint, request_id, key_id, tenant, lead_id, "
                          "model_name, model_version, feature_service, score, tier) VALUES (now(), 'score', 'r', "
                          "'k', 'test', %s, %s, '1', 'fs', 0.5, 'A')", (lead, model))
    with psycopg.connect(settings.pg_dsn(role="monitor"), autocommit=True) as conn:
        assert conn.execute("SELECT current_user").fetchone()[0] == "leadscore_monitor"
        seen = {r[0] for r in conn.execute("SELECT lead_id FROM serving.prediction_log WHERE model_name = %s",
                                           (model,))}
        assert seen == {ACME, OTHER}
        assert conn.execute("SELECT count(*) FROM compliance.consent WHERE lead_id IN (%s, %s)",
                            (ACME, OTHER)).fetchone()[0] == 2
        conn.execute("INSERT INTO monitoring.results (kind, model_name, model_version, window_start, window_end, "
                     "summary) VALUES ('decision', %s, '1', now(), now(), '{}')", (model,))
        conn.execute("INSERT INTO compliance.audit_log (actor, action) VALUES ('monitor', 'role_test')")
        for statement in ("UPDATE monitoring.results SET summary = '{}'", "DELETE FROM monitoring.results",
                          "DELETE FROM serving.prediction_log", "UPDATE serving.prediction_log SET score = 1",
                          "DELETE FROM monitoring.reference_rows", "INSERT INTO compliance.consent (lead_id, purpose, "
                          "granted, source) VALUES ('x', 'scoring', true, 'x')", "SELECT count(*) FROM "
                          "serving.api_keys", "SELECT count(*) FROM text_store.messages",
                          "DELETE FROM compliance.audit_log", "CREATE TABLE monitoring.planted (x int)"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
    with psycopg.connect(settings.pg_dsn(), autocommit=True) as owner:
        owner.execute("DELETE FROM monitoring.results WHERE model_name = %s", (model,))
        owner.execute("DELETE FROM serving.prediction_log WHERE model_name = %s", (model,))


def test_materialization_reads_every_feature_table_even_one_made_later_and_changes_nothing(
        settings: Settings, serving_conn) -> None:  # noqa: ANN001
    """A dataset's table made after the migrations (as ingest makes it: by the owner, then protect_tenant) is
    readable by the materialization's role, every tenant's rows; what it may not do is refused."""
    with psycopg.connect(settings.pg_dsn(), autocommit=True) as owner:
        owner.execute("DROP TABLE IF EXISTS offline.role_probe")
        owner.execute("CREATE TABLE offline.role_probe (lead_id text, x int)")
        owner.execute("SELECT compliance.protect_tenant('offline.role_probe'::regclass)")
        owner.execute("INSERT INTO offline.role_probe VALUES (%s, 1), (%s, 2)", (ACME, OTHER))
    try:
        with psycopg.connect(settings.pg_dsn(role="materialize"), autocommit=True) as conn:
            assert conn.execute("SELECT current_user").fetchone()[0] == "leadscore_materialize"
            assert {r[0] for r in conn.execute("SELECT lead_id FROM offline.role_probe")} == {ACME, OTHER}
            assert conn.execute("SELECT count(*) FROM compliance.consent WHERE lead_id IN (%s, %s)",
                                (ACME, OTHER)).fetchone()[0] == 2
            for statement in ("DELETE FROM offline.role_probe", "UPDATE offline.role_probe SET x = 0",
                              "INSERT INTO offline.role_probe VALUES ('x', 0)", "DELETE FROM offline.labels",
                              "UPDATE offline.materialization_runs SET ok = false",
                              "INSERT INTO compliance.consent (lead_id, purpose, granted, source) VALUES "
                              "('x', 'scoring', true, 'x')", "SELECT count(*) FROM serving.prediction_log",
                              "SELECT count(*) FROM serving.api_keys", "SELECT count(*) FROM compliance.audit_log",
                              "CREATE TABLE offline.planted (x int)"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(statement)
    finally:
        with psycopg.connect(settings.pg_dsn(), autocommit=True) as owner:
            owner.execute("DROP TABLE IF EXISTS offline.role_probe")



@pytest.fixture()
def privacy_conn(settings: Settings, serving_conn) -> psycopg.Connection:  # noqa: ANN001
    """The rights' login (migration 0021) beside a lead table made after the migrations, as ingest makes it, with
    rows of two tenants, and an audit row to refuse deleting."""
    with psycopg.connect(settings.pg_dsn(), autocommit=True) as owner:
        owner.execute("DROP TABLE IF EXISTS offline.role_probe")
        owner.execute("CREATE TABLE offline.role_probe (lead_id text, x int)")
        owner.execute("SELECT compliance.protect_tenant('offline.role_probe'::regclass)")
        owner.execute("INSERT INTO offline.role_probe VALUES (%s, 1), (%s, 2)", (ACME, OTHER))
        owner.execute("INSERT INTO compliance.audit_log (actor, action, lead_id) VALUES ('test', 'probe', %s)", (ACME,))
    try:
        with psycopg.connect(settings.pg_dsn(role="privacy"), autocommit=True) as conn:
            yield conn
    finally:
        with psycopg.connect(settings.pg_dsn(), autocommit=True) as owner:
            owner.execute("DROP TABLE IF EXISTS offline.role_probe")


def test_the_privacy_role_reaches_every_tenants_lead_rows(settings: Settings, privacy_conn) -> None:  # noqa: ANN001
    """Erasure, export and retention reach every lead row, in tables made later too; history changes only as the
    erasure role, lead_id only; no superuser's rights and no road to MLflow's database."""
    row = privacy_conn.execute("SELECT current_user, rolsuper, rolbypassrls, rolcreaterole FROM pg_roles "
                               "WHERE rolname = current_user").fetchone()
    assert row == ("leadscore_privacy", False, False, False)
    assert {r[0] for r in privacy_conn.execute("SELECT lead_id FROM offline.role_probe")} == {ACME, OTHER}
    with privacy_conn.transaction():
        assert privacy_conn.execute("DELETE FROM offline.role_probe WHERE lead_id = %s", (ACME,)).rowcount == 1
        privacy_conn.execute("SET LOCAL ROLE leadscore_erasure")
        assert privacy_conn.execute("UPDATE compliance.audit_log SET lead_id = 'tok_probe' WHERE lead_id = %s AND "
                                    "action = 'probe'", (ACME,)).rowcount >= 1
        raise psycopg.Rollback()
    with pytest.raises(psycopg.OperationalError, match="permission denied"):
        psycopg.connect(settings.pg_dsn(settings.mlflow_db, role="privacy"), connect_timeout=5)


@pytest.mark.parametrize("statement", [
    "CREATE TABLE offline.planted (x int)",
    "DROP TABLE offline.role_probe",
    "TRUNCATE offline.role_probe",
    "TRUNCATE compliance.consent",
    "UPDATE compliance.audit_log SET actor = 'x'",
    "UPDATE compliance.audit_log SET lead_id = 'x'",  # only as the erasure role
    "DELETE FROM compliance.audit_log",  # only as the retention role
    "DELETE FROM compliance.consent_ledger",
    "UPDATE compliance.consent_ledger SET granted = NOT granted",
    "DELETE FROM compliance.erasure_receipts",
    "DELETE FROM compliance.lineage",
    "SELECT secret_hmac FROM serving.api_keys",
    "UPDATE serving.api_keys SET revoked_at = NULL",
    "SELECT count(*) FROM serving.console_sessions",
    "DELETE FROM offline.ingest_runs",
    "UPDATE monitoring.results SET summary = '{}'",
    "ALTER ROLE leadscore_privacy BYPASSRLS",
    "SET ROLE leadscore_serving",
])
def test_the_privacy_role_is_refused_what_the_rights_never_do(privacy_conn, statement: str) -> None:  # noqa: ANN001
    with pytest.raises(psycopg.errors.InsufficientPrivilege), privacy_conn.transaction():
        privacy_conn.execute(statement)


def test_training_reads_every_tenants_rows_writes_its_own_records_and_nothing_else(
        settings: Settings, privacy_conn) -> None:  # noqa: ANN001 - the probe table of two tenants exists
    """Training's login (migration 0022) reads a lead table made after the migrations, every tenant's rows, adds
    lineage and reference rows, and is refused DDL (the point-in-time index too), lead changes and the logs."""
    model = "role-train-model"
    with psycopg.connect(settings.pg_dsn(role="train"), autocommit=True) as conn:
        row = conn.execute("SELECT current_user, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user"
                           ).fetchone()
        assert row == ("leadscore_train", False, False)
        assert {r[0] for r in conn.execute("SELECT lead_id FROM offline.role_probe")} == {ACME, OTHER}
        with conn.transaction():
            conn.execute("INSERT INTO compliance.lineage (model_name, run_id, lead_token) VALUES (%s, 'r', 't')",
                         (model,))
            conn.execute("INSERT INTO monitoring.reference_rows (model_name, run_id, part, lead_id, event_timestamp, "
                         "label, score, features) VALUES (%s, 'r', 'test', %s, now(), 1, 0.5, '{}')", (model, ACME))
            raise psycopg.Rollback()
        for statement in ("CREATE INDEX role_probe_pit_idx ON offline.role_probe (lead_id)",
                          "CREATE TABLE offline.planted (x int)", "DELETE FROM offline.role_probe",
                          "UPDATE offline.labels SET label = 1", "DELETE FROM compliance.lineage",
                          "INSERT INTO compliance.consent (lead_id, purpose, granted, source) VALUES ('x', "
                          "'scoring', true, 'x')", "SELECT count(*) FROM serving.prediction_log",
                          "SELECT count(*) FROM serving.api_keys", "SELECT count(*) FROM compliance.audit_log",
                          "DELETE FROM text_store.messages", "SET ROLE leadscore_erasure"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
                conn.execute(statement)



def test_ingest_makes_and_protects_its_dataset_tables_and_nothing_else(settings: Settings, serving_conn) -> None:  # noqa: ANN001
    """Ingest's login (migration 0023) makes a dataset's table, owns it (a spec's new column), protects it with
    row-level security through compliance.protect_tenant, writes consent; and is refused deleting lead rows,
    history, other schemas and what it does not own."""
    try:
        with psycopg.connect(settings.pg_dsn(role="ingest"), autocommit=True) as conn:
            row = conn.execute("SELECT current_user, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user"
                               ).fetchone()
            assert row == ("leadscore_ingest", False, False)
            conn.execute("DROP TABLE IF EXISTS offline.ingest_probe")
            conn.execute("CREATE TABLE offline.ingest_probe (lead_id text, event_timestamp timestamptz, x int)")
            conn.execute("SELECT compliance.protect_tenant('offline.ingest_probe'::regclass)")
            conn.execute("ALTER TABLE offline.ingest_probe ADD COLUMN IF NOT EXISTS y int")
            conn.execute("INSERT INTO offline.ingest_probe VALUES (%s, now(), 1, 2)", (ACME,))
            conn.execute("INSERT INTO compliance.consent (lead_id, purpose, granted, source) VALUES (%s, 'scoring', "
                         "true, 'test') ON CONFLICT (lead_id, purpose) DO UPDATE SET granted = true", (ACME,))
            for statement in ("DELETE FROM offline.labels", "DELETE FROM offline.lead_demographics",
                              "DELETE FROM compliance.consent", "TRUNCATE offline.labels", "DROP TABLE offline.labels",
                              "DELETE FROM compliance.audit_log", "UPDATE compliance.consent_ledger SET granted = true",
                              "SELECT count(*) FROM serving.prediction_log", "SELECT count(*) FROM serving.api_keys",
                              "CREATE TABLE compliance.planted (x int)", "CREATE TABLE public.planted (x int)",
                              "ALTER TABLE offline.labels ADD COLUMN planted int", "SET ROLE leadscore_erasure"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
                    conn.execute(statement)
        with psycopg.connect(settings.pg_dsn(role="materialize"), autocommit=True) as conn:  # the jobs read it
            assert conn.execute("SELECT lead_id FROM offline.ingest_probe").fetchall() == [(ACME,)]
        with psycopg.connect(settings.pg_dsn(role="privacy"), autocommit=True) as conn, conn.transaction():
            assert conn.execute("DELETE FROM offline.ingest_probe WHERE lead_id = %s", (ACME,)).rowcount == 1
            raise psycopg.Rollback()
        with psycopg.connect(settings.pg_dsn(), autocommit=True) as owner:
            assert owner.execute("SELECT relrowsecurity FROM pg_class WHERE oid = 'offline.ingest_probe'::regclass"
                                 ).fetchone()[0]
    finally:
        with psycopg.connect(settings.pg_dsn(), autocommit=True) as owner:
            owner.execute("DROP TABLE IF EXISTS offline.ingest_probe")
