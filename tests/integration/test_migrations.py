"""The versioned schema: applied by `infra up`, idempotent, and guarded against edits after the fact."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from infra.config import Settings
from infra.migrate import MIGRATIONS_DIR, apply_migrations, discover
from infra.process import ServiceError

pytestmark = pytest.mark.integration


def test_infra_up_applied_every_migration_and_the_schemas_exist(settings: Settings) -> None:
    import psycopg

    with psycopg.connect(settings.pg_dsn()) as conn:
        applied = [r[0] for r in conn.execute("SELECT version FROM leadscore_meta.schema_migrations ORDER BY 1")]
        schemas = {r[0] for r in conn.execute("SELECT nspname FROM pg_namespace")}
        tables = {r[0] for r in conn.execute(
            "SELECT table_schema || '.' || table_name FROM information_schema.tables")}
        extensions = {r[0] for r in conn.execute("SELECT extname FROM pg_extension")}
    assert applied == [m.version for m in discover()]
    assert {"offline", "compliance", "text_store", "serving"} <= schemas
    assert {"compliance.consent", "compliance.audit_log"} <= tables
    assert "vector" in extensions


def test_applying_again_changes_nothing(settings: Settings) -> None:
    assert apply_migrations(settings) == []


def test_consent_rejects_an_unknown_purpose(settings: Settings) -> None:
    import psycopg

    with psycopg.connect(settings.pg_dsn()) as conn, pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("INSERT INTO compliance.consent (lead_id, purpose, granted, source) "
                     "VALUES ('L1', 'resale', true, 'test')")


def test_an_edited_applied_migration_is_refused(settings: Settings, tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, folder)
    first = sorted(folder.glob("*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited\n")
    with pytest.raises(ServiceError, match="changed after it was applied"):
        apply_migrations(settings, folder)


def test_a_new_migration_is_applied_once_in_order(settings: Settings, tmp_path: Path) -> None:
    import psycopg

    folder = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, folder)
    (folder / "9001_test_extra.sql").write_text("CREATE TABLE leadscore_meta.test_extra (x int);")
    try:
        assert apply_migrations(settings, folder) == ["9001_test_extra"]
        assert apply_migrations(settings, folder) == []
    finally:
        with psycopg.connect(settings.pg_dsn()) as conn:
            conn.execute("DROP TABLE IF EXISTS leadscore_meta.test_extra")
            conn.execute("DELETE FROM leadscore_meta.schema_migrations WHERE version = 9001")
