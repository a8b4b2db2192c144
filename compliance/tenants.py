"""Tenants: every lead belongs to one, and its identity in every store is (tenant, lead id).

A broker firm or CRM is a tenant. The stores keep a lead of tenant `acme` under the key `acme/L-1001` (offline rows,
labels, consent and its ledger, messages, the prediction and audit logs, online keys, monitoring rows), and a lead
of the `default` tenant (what is ingested without `--tenant`) under its bare id. `/` is reserved for this: no lead id
may hold it. The same CRM id in two tenants is two leads; nothing of one is keyed like the other.

The API never shows or takes the stored form: a key (or token) of tenant T names its leads by the CRM's id, and the
service looks up `T/<id>`. A lead of another tenant is therefore a lead the caller's tenant does not hold, answered
exactly as one that never existed (no oracle). Keys of tenant `admin` act in the default tenant.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

DEFAULT = "default"
ADMIN = "admin"
SEPARATOR = "/"
NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")  # whole names only: NAME.fullmatch


class TenantError(ValueError):
    """A tenant name or a lead id that cannot be stored as asked."""


def check_tenant(name: str) -> str:
    """The tenant name, or TenantError naming what a tenant name may hold."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise TenantError(f"tenant {name!r} is not a tenant name: 1-32 of a-z, 0-9, _ and -, starting with a letter "
                          "or digit")
    return name


def namespace(tenant: str | None) -> str:
    """The tenant whose leads a caller of `tenant` addresses (admin and none: the default tenant)."""
    return DEFAULT if tenant in (None, "", ADMIN) else tenant


def stored_id(tenant: str | None, lead_id: str) -> str:
    """The key a store holds the tenant's lead under."""
    if SEPARATOR in lead_id:
        raise TenantError(f"lead id {lead_id!r} holds '{SEPARATOR}', which LeadScore reserves for tenants")
    space = namespace(tenant)
    return lead_id if space == DEFAULT else f"{space}{SEPARATOR}{lead_id}"


def split_id(stored: str) -> tuple[str, str]:
    """(tenant, the CRM's lead id) of a stored key."""
    tenant, sep, lead = stored.partition(SEPARATOR)
    return (tenant, lead) if sep else (DEFAULT, stored)



ROLE = "leadscore_tenant"  # infra/migrations/0012_tenant_rows.sql: reads lead tables, its tenant's rows only


@contextmanager
def tenant_reads(conn, tenant: str | None) -> Iterator[None]:  # noqa: ANN001 - psycopg connection
    """A transaction in which `conn` reads as the tenant role for `tenant`: PostgreSQL's row-level security then
    hides every other tenant's rows, whatever the query asks for. It reads only (no grant to write)."""
    with conn.transaction():
        conn.execute(f"SET LOCAL ROLE {ROLE}")
        conn.execute("SELECT set_config('leadscore.tenant', %s, true)", (namespace(tenant),))
        try:
            yield
        finally:
            if not conn.closed and conn.info.transaction_status.name == "INTRANS":  # inside an outer transaction
                conn.execute("RESET ROLE")
                conn.execute("SELECT set_config('leadscore.tenant', '', true)")


def tenants_of(lead_ids):  # noqa: ANN001, ANN201 - a pandas Series of stored ids -> a Series of tenant names
    """Each stored id's tenant."""
    head = lead_ids.astype(str).str.partition(SEPARATOR)
    return head[0].where(head[1] == SEPARATOR, DEFAULT)


def choose_tenants(frame, tenant: str | None, all_tenants: bool):  # noqa: ANN001, ANN201 - pandas DataFrame
    """(the rows to train on, the tenants they hold as 'a,b'): one tenant's leads (`tenant`), every tenant's
    (`all_tenants`), or, with neither, the set as it is when it holds a single tenant. Training across tenants is
    an explicit choice: a set of several tenants without one of the two is a TenantError."""
    if tenant is not None and all_tenants:
        raise TenantError("give --tenant or --all-tenants, not both")
    held = tenants_of(frame["lead_id"])
    if tenant is not None:
        check_tenant(tenant)
        frame = frame[(held == tenant).to_numpy()]
        if frame.empty:
            raise TenantError(f"the training set holds no lead of tenant {tenant!r} (it holds "
                              f"{', '.join(sorted(set(held)))})")
        return frame, tenant
    names = sorted(set(held))
    if len(names) > 1 and not all_tenants:
        raise TenantError(f"the training set holds the leads of {len(names)} tenants ({', '.join(names[:10])}): "
                          "train one with --tenant T, or all together with --all-tenants")
    return frame, ",".join(names)
