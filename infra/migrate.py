"""Versioned SQL migrations: each `infra/migrations/NNNN_name.sql` runs once, in order, in a transaction."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from infra.config import Settings
from infra.process import ServiceError

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_LOCK_KEY = 7_120_351  # advisory lock: two `infra up` at once never apply the same file twice


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover(folder: Path = MIGRATIONS_DIR) -> list[Migration]:
    """All migration files, ordered by their numeric prefix."""
    found = []
    for path in sorted(folder.glob("*.sql")):
        prefix, _, rest = path.stem.partition("_")
        if not prefix.isdigit():
            raise ServiceError(f"migration {path.name}: name must start with a number, like 0002_{path.stem}.sql")
        found.append(Migration(int(prefix), rest, path.read_text()))
    versions = [m.version for m in found]
    if len(versions) != len(set(versions)):
        raise ServiceError(f"two migrations share a number in {folder}")
    return found


def apply_migrations(settings: Settings, folder: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply pending migrations; return the names applied (empty when up to date)."""
    import psycopg

    applied_now: list[str] = []
    with psycopg.connect(settings.pg_dsn(), autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            conn.execute("CREATE SCHEMA IF NOT EXISTS leadscore_meta")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS leadscore_meta.schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = dict(conn.execute("SELECT version, checksum FROM leadscore_meta.schema_migrations").fetchall())
            for migration in discover(folder):
                if migration.version in done:
                    if done[migration.version] != migration.checksum:
                        raise ServiceError(
                            f"migration {migration.version:04d}_{migration.name} changed after it was applied: "
                            "add a new migration file instead of editing an applied one"
                        )
                    continue
                with conn.transaction():
                    conn.execute(migration.sql)
                    conn.execute(
                        "INSERT INTO leadscore_meta.schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                        (migration.version, migration.name, migration.checksum),
                    )
                applied_now.append(f"{migration.version:04d}_{migration.name}")
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied_now
