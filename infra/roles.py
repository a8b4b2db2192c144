"""PostgreSQL login roles per component (least privilege): their passwords, from the state directory's secrets.

The migrations create the roles of the LeadScore database and grant them what they need (0014:
`leadscore_serving`); a password never goes into a migration file. `infra up` calls `ensure_login_roles` after the
migrations and before MLflow starts: each role's password is the secret `pg_<component>` (generated 0600 on first
use, or LEADSCORE_PG_<COMPONENT>_PASSWORD), set again on every start so a rotated secret takes effect.

MLflow's role (`leadscore_mlflow`) is made here: it owns MLflow's database and every table in it (taken over from
the owner for a database an earlier version made) and may connect to no other LeadScore database, so the registry's
server, the one a browser talks to, holds no login that reaches a lead. Both databases are closed to PUBLIC: only
the roles named here connect.
"""

from __future__ import annotations

from infra.config import PG_ROLES, Settings


def ensure_login_roles(settings: Settings) -> list[str]:
    """Create MLflow's role, set every component role's password, give MLflow's database to its role, and let only
    the named roles connect to each database; return the roles set."""
    import psycopg
    from psycopg import sql

    done = []
    with psycopg.connect(settings.pg_dsn(), autocommit=True) as conn:
        mlflow = PG_ROLES["mlflow"]
        conn.execute("SELECT leadscore_meta.create_login_role(%s)", (mlflow,))  # migration 0014
        for component, role in PG_ROLES.items():
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is None:
                continue  # its migration has not run (an older schema): nothing to set
            password = settings.secret(f"pg_{component}", create=True)
            conn.execute(sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {}").format(sql.Identifier(role),
                                                                               sql.Literal(password)))
            done.append(role)
        main, registry = sql.Identifier(settings.pg_db), sql.Identifier(settings.mlflow_db)
        conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(registry, sql.Identifier(mlflow)))
        conn.execute(sql.SQL("REVOKE CONNECT ON DATABASE {} FROM PUBLIC").format(registry))
        conn.execute(sql.SQL("REVOKE CONNECT ON DATABASE {} FROM PUBLIC").format(main))
        for component, role in PG_ROLES.items():
            if component != "mlflow" and role in done:
                conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(main, sql.Identifier(role)))
    _give_tables(settings, mlflow)
    return done


def _give_tables(settings: Settings, role: str) -> None:
    """Every table, sequence and view in MLflow's database owned by `role` (a database made before the role was)."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(settings.pg_dsn(settings.mlflow_db), autocommit=True) as conn:
        owned = conn.execute("""SELECT c.relkind, n.nspname, c.relname FROM pg_class c
            JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
              AND n.nspname NOT LIKE 'pg_toast%%' AND pg_get_userbyid(c.relowner) <> %s
              AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'a'
                              AND c.relkind = 'S')""", (role,)).fetchall()
        kinds = {"r": "TABLE", "p": "TABLE", "v": "VIEW", "m": "MATERIALIZED VIEW", "S": "SEQUENCE"}
        for kind, schema, name in owned:
            conn.execute(sql.SQL("ALTER {} {} OWNER TO {}").format(sql.SQL(kinds[kind]), sql.Identifier(schema, name),
                                                                   sql.Identifier(role)))
