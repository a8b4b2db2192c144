"""PostgreSQL login roles per component (least privilege): their passwords, from the state directory's secrets.

The migrations create the roles and grant them what they need (0014: `leadscore_serving`); a password never goes
into a migration file. `infra up` calls `ensure_login_roles` after the migrations: each role's password is the
secret `pg_<component>` (generated 0600 on first use, or LEADSCORE_PG_<COMPONENT>_PASSWORD), set again on every
start so a rotated secret takes effect. The MLflow database is closed to every role but the owner.
"""

from __future__ import annotations

from infra.config import PG_ROLES, Settings


def ensure_login_roles(settings: Settings) -> list[str]:
    """Set each component role's password from its secret; return the roles set."""
    import psycopg
    from psycopg import sql

    done = []
    with psycopg.connect(settings.pg_dsn(), autocommit=True) as conn:
        for component, role in PG_ROLES.items():
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is None:
                continue  # its migration has not run (an older schema): nothing to set
            password = settings.secret(f"pg_{component}", create=True)
            conn.execute(sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {}").format(sql.Identifier(role),
                                                                               sql.Literal(password)))
            done.append(role)
        conn.execute(sql.SQL("REVOKE CONNECT ON DATABASE {} FROM PUBLIC").format(sql.Identifier(settings.mlflow_db)))
    return done
