"""`leadscore privacy` commands about a person's requests: access, correction, requests and grievances, retention."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

ROLE = "privacy"  # its own PostgreSQL login (infra/migrations/0021_privacy_role.sql)
ByOption = Annotated[str, typer.Option("--by", help="who records this (operator name or job), for the audit trail")]
TenantOption = Annotated[str | None, typer.Option(help="the lead's tenant (default: the default tenant; the stored "
                                                  "form tenant/id is taken too)")]


def _settings():  # noqa: ANN202 - infra.config.Settings
    from infra.config import Settings

    return Settings.load()


def _stored(lead: str, tenant: str | None) -> str:
    """The lead as the stores key it: the CRM id of `tenant` (compliance/tenants.py), or as given."""
    from compliance.cli import _ids

    return _ids([lead], None, tenant)[0]


def requests_command(overdue: Annotated[bool, typer.Option("--overdue", help="only those past their due date")] = False,
                     all_: Annotated[bool, typer.Option("--all", help="closed ones too")] = False) -> None:
    """Principal requests with their due dates; exit 1 with --overdue when any is overdue."""
    from compliance.requests import list_requests

    rows = list_requests(_settings(), overdue=overdue, open_only=not all_)
    for r in rows:
        typer.echo(f"{r['request_id']}  {r['kind']:<10} {r['status']:<7} due {r['due_at']:%Y-%m-%d %H:%M}  "
                   f"via {r['channel']:<12} lead {r['lead_id'] or '(erased)'}")
    typer.echo(f"{len(rows)} request(s)" + (" overdue" if overdue else ""))
    if overdue and rows:
        raise typer.Exit(1)


def export_command(lead: Annotated[str, typer.Argument(help="lead id")], by: ByOption = "operator",
                   out: Annotated[Path | None, typer.Option(help="write the JSON here instead of stdout")] = None,
                   tenant: TenantOption = None) -> None:
    """Everything held about a lead, from every store, as JSON (an access request, recorded and audited). With
    --tenant the stores are read under row-level security as that tenant, as the API reads them."""
    from compliance.export import export_lead
    from compliance.tenants import namespace

    stored = _stored(lead, tenant)
    data = json.dumps(export_lead(_settings(), stored, by, "cli", namespace(tenant) if tenant else None), indent=2,
                      ensure_ascii=False)
    if out is None:
        typer.echo(data)
    else:
        out.write_text(data, encoding="utf-8")
        typer.echo(f"written to {out}")


def correct_command(lead: Annotated[str, typer.Argument(help="lead id")],
                    set_: Annotated[list[str], typer.Option("--set", help="field=value (repeat)")],
                    dataset: Annotated[str | None, typer.Option(help="the dataset, if several have it")] = None,
                    by: ByOption = "operator", tenant: TenantOption = None) -> None:
    """Correct a lead's data: a corrected row from now on, the online store refreshed, audited."""
    from compliance.correct import correct, parse_assignments

    done = correct(_settings(), _stored(lead, tenant), parse_assignments(set_), dataset, by)
    for name, value in done.changed.items():
        typer.echo(f"{done.table}.{name}: {done.previous[name]!r} -> {value!r}")
    typer.echo(f"corrected row written; {done.online_rows} online row(s) refreshed; request {done.request_id} closed")


def request_command(kind: Annotated[str, typer.Argument(help="access, correction, erasure or grievance")],
                    lead: Annotated[str, typer.Argument(help="lead id")],
                    detail: Annotated[str, typer.Option(help="what the person asked or complained about")] = "",
                    channel: Annotated[str, typer.Option(help="how it arrived: email, call, web_form, ...")] = "email",
                    tenant: TenantOption = None) -> None:
    """Record a principal request (a grievance, or a request to act on later) with its due date."""
    from compliance.requests import open_request

    request_id = open_request(_settings(), kind, _stored(lead, tenant), channel, {"detail": detail} if detail else {})
    typer.echo(f"request {request_id} ({kind}) recorded; see `leadscore privacy requests`")


def close_command(request_id: Annotated[str, typer.Argument(help="request id (rq_...)")],
                  outcome: Annotated[str, typer.Option(help="done or rejected")] = "done",
                  note: Annotated[str, typer.Option(help="how it was answered")] = "") -> None:
    """Close a principal request with its outcome."""
    import psycopg

    from compliance.erase import PrivacyError
    from compliance.requests import close_request

    if outcome not in ("done", "rejected"):
        raise PrivacyError(f"--outcome: {outcome!r} is not done or rejected")
    with psycopg.connect(_settings().pg_dsn(role=ROLE)) as conn:
        if not conn.execute("SELECT 1 FROM compliance.requests WHERE request_id = %s AND status IN ('open', 'queued')",
                            (request_id,)).fetchone():
            raise PrivacyError(f"request_id: no open request {request_id!r}")
        close_request(conn, request_id, outcome, {"note": note} if note else {})
    typer.echo(f"request {request_id} closed: {outcome}")


def retention_command(
    every: Annotated[str | None, typer.Option(help="repeat on an interval, e.g. 1d or 6h (default: once)")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="report what would happen, change nothing")] = False,
    now: Annotated[str | None, typer.Option(help="as of this ISO 8601 time (default: now)")] = None,
) -> None:
    """Notify leads 48 hours before their data's retention ends, erase after the notice, purge old logs."""
    import time
    from datetime import datetime

    from compliance.erase import PrivacyError
    from compliance.retention import retention
    from monitoring.windows import parse_duration

    try:
        as_of = datetime.fromisoformat(now) if now else None
    except ValueError:
        raise PrivacyError(f"--now: {now!r} is not an ISO 8601 time") from None
    if as_of is not None and as_of.tzinfo is None:
        raise PrivacyError(f"--now: {now!r} has no time zone (add +05:30 or Z)")
    period = parse_duration(every, "--every").total_seconds() if every else None
    settings = _settings()
    while True:
        run = retention(settings, as_of, dry_run, say=typer.echo)
        verb = "would" if dry_run else "did"
        typer.echo(f"retention as of {run.as_of.isoformat()} ({verb}): {len(run.noticed)} notice(s), "
                   f"{run.cancelled} cancelled (active again), {len(run.erased)} erased"
                   + (f" (receipt {run.receipt})" if run.receipt else "") + ", purged "
                   + ", ".join(f"{n} from {t}" for t, n in run.purged.items())
                   + (f"; {run.delivered} notice(s) delivered to the webhook" if run.delivered else ""))
        if period is None:
            return
        time.sleep(period)


def notices_command() -> None:
    """The open retention notices as JSON lines, for the CRM to deliver."""
    from compliance.retention import pending_notices

    for notice in pending_notices(_settings()):
        typer.echo(json.dumps(notice))
