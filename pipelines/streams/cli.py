"""`leadscore stream ...`: run stream workers, create topics, fill message embeddings."""

from __future__ import annotations

import logging
import os
from typing import Annotated

import typer

stream_app = typer.Typer(help="Faust stream workers: lead events from Kafka into both stores.", no_args_is_help=True)


def _settings():
    from infra.config import Settings

    return Settings.load()


@stream_app.command("topics")
def topics_command() -> None:
    """Create the source and dead-letter topics (idempotent)."""
    from pipelines.streams.topics import ensure_topics, partitions

    settings = _settings()
    created = ensure_topics(settings)
    typer.echo(f"topics ready ({partitions(settings)} partitions each); created: {', '.join(created) or 'none'}")


@stream_app.command("worker")
def worker_command(
    metrics_port: Annotated[int, typer.Option(help="serve Prometheus metrics on this port (0: any free port)")] = 19108,
    batch_size: Annotated[int, typer.Option(help="events per batch at most (app.DEFAULT_BATCH_SIZE)")] = 20_000,
    flush_ms: Annotated[int, typer.Option(help="land a partial batch after this many milliseconds")] = 100,
    loglevel: Annotated[str, typer.Option(help="info, warning, ...")] = "info",
) -> None:
    """Run one stream worker (start more for more throughput: they split the partitions)."""
    from prometheus_client import start_http_server

    import pipelines.streams.metrics  # noqa: F401 - before Feast is imported (see metrics.py)
    from pipelines.streams.app import create_app
    from pipelines.streams.topics import ensure_topics

    settings = _settings()
    ensure_topics(settings)
    server, _ = start_http_server(metrics_port, addr=settings.host)
    typer.echo(f"metrics: http://{settings.host}:{server.server_port}/metrics", err=True)
    from infra.monitor_servers import register_target

    # Prometheus (infra up) finds the worker by file service discovery; the file goes when the worker stops
    target = register_target(settings, f"stream-worker-{os.getpid()}", server.server_port, {"worker": str(os.getpid())})
    app = create_app(settings, batch_size=batch_size, flush_s=flush_ms / 1000)
    from faust.worker import Worker

    worker = Worker(app, loglevel=loglevel.upper(), quiet=True)
    # Faust's progress spinner (on at WARNING and above) sets the root logger to DEBUG so that it spins on every
    # record: every logger.debug() call in aiokafka and Faust (several per message sent) then builds a LogRecord
    worker.spinner = None
    try:
        worker.execute_from_commandline()
    except SystemExit:
        failure = getattr(app, "failure", None)
        if failure is not None:
            raise RuntimeError(f"the stream worker stopped on a batch it could not process ({failure!r}); nothing "
                               "of that batch was acknowledged, so a restarted worker processes it again") from None
        raise
    finally:
        if target is not None:
            target.unlink(missing_ok=True)


@stream_app.command("embed")
def embed_command(
    every: Annotated[float, typer.Option(help="seconds to wait when nothing is pending")] = 5.0,
    batch: Annotated[int, typer.Option(help="messages per batch")] = 256,
    runs: Annotated[int | None, typer.Option(help="stop after this many batches")] = None,
) -> None:
    """Embed consented message text in batches, for the re-ranker."""
    from pipelines.streams.embed import run_embedder

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    total = run_embedder(_settings(), every, batch, runs)
    typer.echo(f"embedded {total} messages")
