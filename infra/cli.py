"""The `leadscore` command. Each subcommand imports its heavy libraries only when it runs."""

from __future__ import annotations

import os
import sys
import time
from typing import Annotated

import typer

app = typer.Typer(
    name="leadscore",
    help="LeadScore: rank brokers' leads by their chance to convert, explain each score, keep data lawful.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
infra_app = typer.Typer(help="Install, start, stop and inspect LeadScore's servers.", no_args_is_help=True)
app.add_typer(infra_app, name="infra")


def _register_pipelines() -> None:
    from pipelines.cli import dataset_app, features_app, ingest_app, materialize_command

    app.add_typer(ingest_app, name="ingest")
    app.add_typer(dataset_app, name="dataset")
    app.add_typer(features_app, name="features")
    app.command("materialize")(materialize_command)
    from pipelines.streams.cli import stream_app

    app.add_typer(stream_app, name="stream")
    from pipelines.simulate import simulate_command

    app.command("simulate")(simulate_command)


_register_pipelines()


def _register_models() -> None:
    from models.cli import explain_command, promote_command, train_command

    app.command("train")(train_command)
    app.command("promote")(promote_command)
    app.command("explain")(explain_command)


_register_models()


def _register_serving() -> None:
    from serving.cli import serve_app

    app.add_typer(serve_app, name="serve")
    from serving.rerank_cli import rerank_app

    app.add_typer(rerank_app, name="rerank")
    from serving.batch_cli import score_batch_command

    app.command("score-batch")(score_batch_command)


_register_serving()


def _register_monitoring() -> None:
    from monitoring.cli import monitor_app

    app.add_typer(monitor_app, name="monitor")


_register_monitoring()


def _register_privacy() -> None:
    from compliance.cli import privacy_app

    app.add_typer(privacy_app, name="privacy")


_register_privacy()


def _settings():
    from infra.config import Settings

    return Settings.load()


def _print_status(rows) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="LeadScore servers")
    for col in ("service", "address", "pid", "state"):
        table.add_column(col)
    colors = {"healthy": "green", "unhealthy": "red", "stopped": "yellow"}
    for row in rows:
        table.add_row(row.name, f"{row.host}:{row.port}", str(row.pid or "-"),
                      f"[{colors[row.state]}]{row.state}[/]")
    Console().print(table)
    for row in rows:
        if row.name == "serving" and row.pid:  # the console is a route of the scoring service
            typer.echo(f"console: http://{row.host}:{row.port}/console/ (sign in with an API key or a token from "
                       "`leadscore serve token`)")


@infra_app.command("up")
def infra_up() -> None:
    """Install what is missing, start every server, apply the schema, wait until all answer."""
    from infra import stack

    t0 = time.monotonic()
    rows = stack.up(_settings())
    _print_status(rows)
    typer.echo(f"all {len(rows)} servers healthy in {time.monotonic() - t0:.1f} s")


@infra_app.command("down")
def infra_down(
    purge: Annotated[bool, typer.Option("--purge", help="also delete every server's data (irreversible)")] = False,
) -> None:
    """Stop exactly the servers `infra up` started (by PID file); data stays in the state directory."""
    from infra import stack

    settings = _settings()
    stopped = stack.down(settings)
    typer.echo(f"stopped {len(stopped)} server(s)" if stopped else "nothing of ours was running")
    if purge:
        stack.purge(settings)
        typer.echo(f"deleted {settings.state_dir} and all data in it")


@infra_app.command("status")
def infra_status() -> None:
    """Print a table of service, address, PID and health; exit 1 if any is not healthy."""
    from infra import stack

    rows = stack.status(_settings())
    _print_status(rows)
    if any(row.state != "healthy" for row in rows):
        raise typer.Exit(1)


@infra_app.command("files")
def infra_files() -> None:
    """List folders and files in the state directory that others than their owner may read; exit 1 if any."""
    from infra.files import loose_files

    settings = _settings()
    loose = loose_files(settings.state_dir)
    for path, mode in loose:
        typer.echo(f"{mode}  {path}")
    if loose:
        typer.secho(f"error: {len(loose)} path(s) under {settings.state_dir} are readable beyond their owner: "
                    f"chmod go-rwx them", fg="red", err=True)
        raise typer.Exit(1)
    typer.echo(f"every folder and file under {settings.state_dir} is its owner's alone")


@infra_app.command("logs")
def infra_logs(
    service: Annotated[str, typer.Argument(help="postgres, redis, kafka, prometheus, evidently, mlflow or serving")],
    lines: Annotated[int, typer.Option("--lines", "-n", help="how many lines from the end")] = 50,
) -> None:
    """Print the end of one server's log."""
    from infra import stack

    server = stack.by_name(_settings(), service)
    if not server.log.exists():
        typer.echo(f"{service} has no log yet at {server.log}: it was never started here")
        raise typer.Exit(1)
    for line in server.log.read_text(errors="replace").splitlines()[-lines:]:
        typer.echo(line)


@app.command("demo")
def demo() -> None:
    """The main job on the embedded servers: servers up, features applied, CRM data ingested, materialized, read."""
    from pipelines.demo import run_demo

    run_demo(_settings(), say=typer.echo)


def main() -> None:
    """Console entry point: known problems become one readable line and a non-zero exit."""
    from compliance.erase import PrivacyError
    from infra.config import ConfigError
    from infra.process import ServiceError
    from models.registry import RegistryUnavailable
    from monitoring.windows import MonitorError

    os.umask(0o077)  # what the product writes (state, logs, exports, artifacts) is its user's alone: 0600 / 0700
    try:
        app()
    except (ServiceError, ConfigError, MonitorError, PrivacyError, RegistryUnavailable) as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - never a stack trace to a user unless asked for
        if os.environ.get("LEADSCORE_DEBUG"):
            raise
        typer.secho(f"error: {type(exc).__name__}: {exc} (set LEADSCORE_DEBUG=1 for the traceback)",
                    fg="red", err=True)
        sys.exit(2)
