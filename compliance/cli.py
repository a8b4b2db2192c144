"""`leadscore privacy ...`: notices, consent, the ledger, erasure and receipts (DPDP Act rights)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

privacy_app = typer.Typer(help="Data principals' rights (DPDP Act): consent, erasure with receipts, the ledger.",
                          no_args_is_help=True)
consent_app = typer.Typer(help="Grant or withdraw a purpose's consent (ledgered, with effect everywhere).",
                          no_args_is_help=True)
privacy_app.add_typer(consent_app, name="consent")

LeadsArg = Annotated[list[str] | None, typer.Argument(help="lead ids")]
FileOption = Annotated[Path | None, typer.Option("--file", help="a file of lead ids, one per line")]
ByOption = Annotated[str, typer.Option("--by", help="who records this (operator name or job), for the audit trail")]
TenantOption = Annotated[str | None, typer.Option(help="the leads' tenant (default: the default tenant; the stored "
                                                  "form tenant/id is taken too)")]


def _settings():  # noqa: ANN202 - infra.config.Settings
    from infra.config import Settings

    return Settings.load()


def _ids(leads: list[str] | None, file: Path | None, tenant: str | None = None) -> list[str]:
    from compliance.erase import PrivacyError
    from compliance.tenants import TenantError, check_tenant, stored_id

    ids = list(leads or [])
    if file is not None:
        if not file.is_file():
            raise PrivacyError(f"--file: {file} does not exist")
        ids += [line.strip() for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not ids:
        raise PrivacyError("give lead ids as arguments or with --file ids.txt")
    if tenant is None:
        return ids
    try:
        return [stored_id(check_tenant(tenant), lead) for lead in ids]
    except TenantError as exc:
        raise PrivacyError(f"--tenant: {exc}") from None


@privacy_app.command("notice")
def notice_command(
    version: Annotated[str | None, typer.Option(help="e.g. lead-processing@1 (default: the newest)")] = None,
    lang: Annotated[str, typer.Option(help="language code: en, hi, ...")] = "en",
) -> None:
    """Print a notice in a language (the texts are data: compliance/notices/*.yaml)."""
    from compliance import notices

    try:
        typer.echo(notices.render(version or notices.current(), lang))
    except notices.NoticeError as exc:
        from compliance.erase import PrivacyError

        raise PrivacyError(str(exc)) from None


def _consent(leads: list[str] | None, file: Path | None, purpose: str, granted: bool, notice: str | None,
             channel: str, by: str, tenant: str | None = None) -> None:
    from compliance.consent import set_consent
    from compliance.notices import PURPOSES

    purposes = list(PURPOSES) if purpose == "all" and not granted else [purpose]
    ids = _ids(leads, file, tenant)
    for p in purposes:
        out = set_consent(_settings(), ids, p, granted, notice, channel, by)
        verb = "granted" if granted else "withdrew"
        typer.echo(f"{verb} {p} for {out.leads} lead(s) under {out.notice_version}; ledger entry {out.ledger_seq}")
        for store, n in out.effects.items():
            typer.echo(f"  removed {n} from {store}")
        if out.erasures_queued:
            typer.echo(f"  no purpose remains for {len(out.erasures_queued)} lead(s): erasure queued "
                       f"({', '.join(out.erasures_queued[:5])}); run `leadscore privacy erase --queued`")


@consent_app.command("grant")
def grant_command(leads: LeadsArg = None, file: FileOption = None,
                  purpose: Annotated[str, typer.Option(help="scoring, marketing_contact, text_analysis or "
                                                         "parental_consent")] = "scoring",
                  notice: Annotated[str | None, typer.Option(help="notice version consented to")] = None,
                  channel: Annotated[str, typer.Option(help="how it was given: cli, call, web_form, ...")] = "cli",
                  by: ByOption = "operator", tenant: TenantOption = None) -> None:
    """Record a consent for a purpose (after the lead has seen the notice)."""
    _consent(leads, file, purpose, True, notice, channel, by, tenant)


@consent_app.command("withdraw")
def withdraw_command(leads: LeadsArg = None, file: FileOption = None,
                     purpose: Annotated[str, typer.Option(help="a purpose, or all")] = "all",
                     channel: Annotated[str, typer.Option(help="how it was withdrawn")] = "cli",
                     by: ByOption = "operator", tenant: TenantOption = None) -> None:
    """Withdraw a purpose's consent: scoring stops at once; with none left, an erasure is queued."""
    _consent(leads, file, purpose, False, None, channel, by, tenant)


@consent_app.command("show")
def show_command(lead: Annotated[str, typer.Argument(help="lead id")]) -> None:
    """A lead's consent per purpose and its ledger history, as JSON."""
    from compliance.consent import consent_state

    typer.echo(json.dumps(consent_state(_settings(), lead), indent=2, ensure_ascii=False))


@privacy_app.command("verify-ledger")
def verify_ledger_command() -> None:
    """Re-derive the consent ledger's hash chain; exit 1 if an entry was edited, deleted or reordered."""
    from compliance.ledger import verify

    out = verify(_settings())
    if out.unbacked:
        typer.secho(f"warning: {out.unbacked} current consent row(s) have no matching ledger entry (written "
                    "outside the product?)", fg="yellow", err=True)
    if out.ok:
        typer.echo(f"ledger intact: {out.entries} entries, chain and signed head verified")
        return
    for problem in out.problems:
        typer.secho(f"ledger broken: {problem}", fg="red", err=True)
    raise typer.Exit(1)


@privacy_app.command("erase")
def erase_command(leads: LeadsArg = None, file: FileOption = None,
                  queued: Annotated[bool, typer.Option("--queued", help="carry out queued erasure requests")] = False,
                  by: ByOption = "operator",
                  out: Annotated[Path | None, typer.Option(help="also write the signed receipt here")] = None,
                  tenant: TenantOption = None) -> None:
    """Erase leads from every store the product writes and print the signed receipt's summary."""
    from compliance.erase import erase
    from compliance.requests import queued_erasures

    settings = _settings()
    if queued:
        pending = queued_erasures(settings)
        if not pending:
            typer.echo("no erasure requests are queued")
            return
        ids = list(pending)
    else:
        ids = _ids(leads, file, tenant)
    done = erase(settings, ids, by, "cli", say=lambda line: typer.echo(f"... {line}", err=True))
    _print_receipt(done.receipt, done.signature, brief=True)
    if out is not None:
        out.write_text(json.dumps({"receipt": done.receipt, "signature": done.signature}, indent=2))
        typer.echo(f"receipt written to {out}")
    if not done.complete:
        raise typer.Exit(1)


def _print_receipt(receipt: dict, signature: str, brief: bool = False) -> None:
    typer.echo(f"erasure {receipt['request_id']} at {receipt['erased_at']}: {receipt['leads']} lead(s), "
               + ("complete" if receipt["complete"] else "INCOMPLETE: see the stores with rows left"))
    for s in receipt["stores"]:
        if s["before"] or s["after"] or not brief:
            typer.echo(f"  {s['store']:<45} before {s['before']:>6}  after {s['after']:>4}  {s['action']}")
    if not receipt["held_anything"]:
        typer.echo("  nothing was held for these leads (the request is still recorded and audited)")
    for v in receipt["model_versions"]:
        typer.echo(f"  model {v['model']} version {v['version']} (run {v['run_id']}) learned from {v['leads']} of them")
    raw = receipt["raw_events"]
    typer.echo(f"  raw events on {', '.join(raw['topics'])} remain until {raw['remain_until']} (topic retention); "
               "replays are refused")
    typer.echo(f"  signature {signature}")


@privacy_app.command("receipt")
def receipt_command(request_id: Annotated[str, typer.Argument(help="erasure request id (er_...)")],
                    out: Annotated[Path | None, typer.Option(help="write the signed receipt here")] = None) -> None:
    """Print a stored erasure receipt and check its signature."""
    from compliance.erase import load_receipt, verify_receipt

    settings = _settings()
    receipt, signature = load_receipt(settings, request_id)
    _print_receipt(receipt, signature)
    if out is not None:
        out.write_text(json.dumps({"receipt": receipt, "signature": signature}, indent=2))
        typer.echo(f"written to {out}")
    if not verify_receipt(settings, receipt, signature):
        typer.secho("signature does NOT verify: the stored receipt was altered", fg="red", err=True)
        raise typer.Exit(1)
    typer.echo("signature verified")


@privacy_app.command("verify-receipt")
def verify_receipt_command(file: Annotated[Path, typer.Argument(help="a receipt JSON written by --out")]) -> None:
    """Check a saved receipt's signature offline (reads only the key in the secrets directory)."""
    from compliance.erase import PrivacyError, verify_receipt

    try:
        saved = json.loads(file.read_text(encoding="utf-8"))
        receipt, signature = saved["receipt"], saved["signature"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise PrivacyError(f"{file}: not a saved receipt ({type(exc).__name__}: {exc})") from None
    if not verify_receipt(_settings(), receipt, signature):
        typer.secho(f"{file}: signature does NOT verify: the receipt was altered or signed elsewhere",
                    fg="red", err=True)
        raise typer.Exit(1)
    typer.echo(f"{file}: signature verified (erasure {receipt.get('request_id')})")


def _register() -> None:
    from compliance.cli_requests import (
        close_command,
        correct_command,
        export_command,
        notices_command,
        request_command,
        requests_command,
        retention_command,
    )

    for name, command in (("export", export_command), ("correct", correct_command), ("request", request_command),
                          ("close", close_command), ("requests", requests_command), ("retention", retention_command),
                          ("notices", notices_command)):
        privacy_app.command(name)(command)


_register()
