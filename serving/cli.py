"""`leadscore serve`: run the scoring service; `serve keys ...` manages its API keys.

Only typer is imported here; BentoML, MLflow and Feast load in the commands that need them.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

serve_app = typer.Typer(help="The scoring service (BentoML): run it and manage its API keys.",
                        invoke_without_command=True)
keys_app = typer.Typer(help="API keys: hashed at rest, scoped to a tenant/broker, rate limited.", no_args_is_help=True)
serve_app.add_typer(keys_app, name="keys")


def _settings():  # noqa: ANN202 - infra.config.Settings
    from infra.config import Settings

    return Settings.load()


def server_command(settings, workers: int = 1, port: int | None = None) -> list[str]:  # noqa: ANN001
    """The `bentoml serve` command line for this checkout."""
    bentoml = Path(sys.executable).parent / "bentoml"
    argv = [str(bentoml)] if bentoml.exists() else [sys.executable, "-m", "bentoml"]
    from infra.config import REPO_ROOT

    return [*argv, "serve", "serving.service:LeadScorer", "--host", settings.host, "--port",
            str(port or settings.serving_port), "--working-dir", str(REPO_ROOT)]


def server_env(workers: int = 1) -> dict[str, str]:
    """Environment of the service: one math thread per worker (OpenMP spinning across workers costs latency)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROMETHEUS_")}  # BentoML sets its own
    env.update({"LEADSCORE_SERVING_WORKERS": str(workers), "BENTOML_DO_NOT_TRACK": "True"})
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env.setdefault(var, "1")
    return env


@serve_app.callback()
def serve(ctx: typer.Context,
          workers: Annotated[int, typer.Option(min=1, max=32, help="worker processes (each loads the model)")] = 1,
          port: Annotated[int | None, typer.Option(help="port (default LEADSCORE_SERVING_PORT, 13000)")] = None,
          ) -> None:
    """Serve models:/<name>@champion over HTTP on LEADSCORE_HOST (127.0.0.1): /score, /rank, /docs, /metrics."""
    if ctx.invoked_subcommand is not None:
        return
    settings = _settings()
    argv = server_command(settings, workers, port)
    typer.echo(f"serving {settings.model_name}@champion on http://{settings.host}:{port or settings.serving_port} "
               f"({workers} worker(s)); API docs at /docs; Ctrl-C stops")
    if Path(argv[0]).exists():
        os.execve(argv[0], argv, server_env(workers))  # the server replaces this process: Ctrl-C reaches it
    os.execvpe(argv[0], argv, server_env(workers))


@keys_app.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option(help="the broker firm or CRM the key belongs to ('admin' may reload)")],
    broker: Annotated[str | None, typer.Option(help="one broker inside the tenant")] = None,
    rate: Annotated[float, typer.Option(min=0.001, help="leads per second allowed (a /rank call costs its leads)")]
    = 1000.0,
    burst: Annotated[int | None, typer.Option(min=1, help="leads allowed at once above the rate [default: two "
                                              "seconds of the rate]")] = None,
    description: Annotated[str, typer.Option(help="a note: what the key is for")] = "",
    scope: Annotated[list[str] | None, typer.Option(help="what it may do (repeat): score (/score, /rank), consent "
                                                    "(/consent), privacy (/privacy/*); default score")] = None,
) -> None:
    """Create an API key and print it once: only a keyed hash of it is stored."""
    from serving.keys import create_key

    try:
        key, grant = create_key(_settings(), tenant, broker, rate, burst, description, tuple(scope or ["score"]))
    except ValueError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(1) from None
    typer.echo(key)
    typer.echo(f"key {grant.key_id} for tenant {grant.tenant}{f' / broker {broker}' if broker else ''}, "
               f"scopes {','.join(grant.scopes)}, {rate:g} leads/s, burst {grant.burst}: store it now, it cannot be "
               "shown again", err=True)


@serve_app.command("token")
def token_create(
    subject: Annotated[str, typer.Option(help="the person's account (e.g. asha@acme-realty)")],
    tenant: Annotated[str, typer.Option(help="the broker firm or CRM the person belongs to")],
    role: Annotated[str, typer.Option(help="broker, manager, data_scientist or privacy_officer")],
    broker: Annotated[str | None, typer.Option(help="the broker (for role broker)")] = None,
    ttl: Annotated[str, typer.Option(help="lifetime: 30m, 8h, 7d")] = "8h",
) -> None:
    """Issue a signed token (JWT) for a person: `Authorization: Bearer <token>` on the API, like a key."""
    from serving.tokens import issue

    units = {"m": 60, "h": 3600, "d": 86400}
    if len(ttl) < 2 or ttl[-1] not in units or not ttl[:-1].isdigit() or int(ttl[:-1]) < 1:
        typer.secho(f"error: --ttl {ttl!r}: a number and a unit, e.g. 30m, 8h, 7d", fg="red", err=True)
        raise typer.Exit(1)
    try:
        token = issue(_settings(), subject, tenant, role, broker, int(ttl[:-1]) * units[ttl[-1]])
    except ValueError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(1) from None
    typer.echo(token)
    typer.echo(f"token for {subject} ({role}, tenant {tenant}{f', broker {broker}' if broker else ''}), valid {ttl}",
               err=True)


@keys_app.command("list")
def keys_list() -> None:
    """List keys (never their secrets)."""
    from serving.keys import list_keys

    for key_id, tenant, broker, rate, burst, created, revoked, note, scopes in list_keys(_settings()):
        state = f"revoked {revoked:%Y-%m-%d %H:%M}" if revoked else "active"
        typer.echo(f"{key_id}  {tenant:16s} {broker or '-':12s} {','.join(scopes):22s} {rate:g}/s burst {burst}  "
                   f"created {created:%Y-%m-%d %H:%M}  {state}  {note}")


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="the key id (the part after ls_)")]) -> None:
    """Revoke a key (servers stop accepting it within LEADSCORE_KEY_CACHE_TTL_S, 30 s)."""
    from serving.keys import revoke_key

    if not revoke_key(_settings(), key_id):
        typer.echo(f"no active key {key_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {key_id}")
