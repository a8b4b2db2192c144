"""`leadscore monitor ...`: drift, realized quality and the retraining loop. Heavy libraries load inside commands."""

from __future__ import annotations

from typing import Annotated

import typer

monitor_app = typer.Typer(help="Watch the champion: drift of what it served, its realized quality, retraining.",
                          no_args_is_help=True)

ModelOption = Annotated[str | None, typer.Option("--model", help="registered model (default: LEADSCORE_MODEL_NAME)")]
WindowOption = Annotated[str, typer.Option("--window", help="how far back from --until: 30m, 12h, 1d, 7d, 2w")]
SinceOption = Annotated[str | None, typer.Option("--since", help="window start, ISO 8601 (overrides --window)")]
UntilOption = Annotated[str | None, typer.Option("--until", help="window end, ISO 8601 (default: now)")]


@monitor_app.callback()
def _quiet_libraries() -> None:
    """Evidently and its server stack warn about their own deprecations on import: not the user's concern."""
    import warnings

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)


def _settings():  # noqa: ANN202 - infra.config.Settings
    from infra.config import Settings

    return Settings.load()


@monitor_app.command("drift")
def drift_command(model: ModelOption = None, window: WindowOption = "1d", since: SinceOption = None,
                  until: UntilOption = None) -> None:
    """Drift of the features and scores the champion served in a window against its training reference."""
    from monitoring.drift import describe, run_drift
    from monitoring.windows import window as parse_window

    settings = _settings()
    start, end = parse_window(window, since, until)
    outcome = run_drift(settings, model or settings.model_name, start, end)
    for line in describe(outcome):
        typer.echo(line)
    for problem in outcome.problems:
        typer.secho(f"warning: {problem}", fg="yellow", err=True)
    typer.echo(f"Evidently UI: {settings.evidently_url}")


@monitor_app.command("metrics")
def metrics_command(
    model: Annotated[list[str] | None, typer.Option("--model", help="models to export (repeat; default: "
                                                    "LEADSCORE_MODEL_NAME)")] = None,
    port: Annotated[int | None, typer.Option(help="port of /metrics (default: the monitor port)")] = None,
) -> None:
    """Serve the monitor's gauges on /metrics for Prometheus until stopped (`monitor watch` serves them too)."""
    import contextlib
    import signal
    import threading

    from monitoring.metrics import serve_metrics

    settings = _settings()
    server = serve_metrics(settings, model or [settings.model_name], port)
    typer.echo(f"metrics: http://{settings.host}:{server.server_port}/metrics (Ctrl-C to stop)")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    server.shutdown()


@monitor_app.command("performance")
def performance_command(
    model: ModelOption = None, window: WindowOption = "8w", since: SinceOption = None, until: UntilOption = None,
    maturity: Annotated[str | None, typer.Option(help="days after which an unconverted lead counts as negative, "
                                                 "e.g. 30d (default: the p90 of the observed label lag)")] = None,
) -> None:
    """Realized quality (ROC AUC, PR AUC, log loss, calibration, top-decile precision) per weekly cohort."""
    from monitoring.performance import describe, run_performance
    from monitoring.windows import parse_duration
    from monitoring.windows import window as parse_window

    settings = _settings()
    start, end = parse_window(window, since, until)
    given = parse_duration(maturity, "--maturity") if maturity else None
    outcome = run_performance(settings, model or settings.model_name, start, end, given)
    for line in describe(outcome):
        typer.echo(line)
    for problem in outcome.problems:
        typer.secho(f"warning: {problem}", fg="yellow", err=True)
    if not outcome.matured:
        typer.secho(f"error: no cohort of {outcome.model.name} v{outcome.model.version} has matured labels yet "
                    f"(maturity window {outcome.maturity.total_seconds() / 86400:.1f} days): wait, widen --since, "
                    "or give --maturity", fg="red", err=True)
        raise typer.Exit(1)


def _loop_options(window: str, performance_window: str, maturity: str | None, sustain: str, auc_drop: float,
                  cooldown: str, auto_promote: bool, trials: int, max_epochs: int,
                  precision_tolerance: float = 0.02, precision_drop: float = 0.2):  # noqa: ANN202 - LoopOptions
    from monitoring.loop import LoopOptions
    from monitoring.retrain import parse_sustain
    from monitoring.windows import parse_duration

    return LoopOptions(
        window=parse_duration(window), performance_window=parse_duration(performance_window, "--performance-window"),
        maturity=parse_duration(maturity, "--maturity") if maturity else None, sustain=parse_sustain(sustain),
        auc_drop=auc_drop, cooldown=parse_duration(cooldown, "--cooldown"), auto_promote=auto_promote,
        trials=trials, max_epochs=max_epochs, precision_tolerance=precision_tolerance, precision_drop=precision_drop)


PerfWindow = Annotated[str, typer.Option("--performance-window", help="scores whose cohorts are checked")]
Maturity = Annotated[str | None, typer.Option(help="days after which an unconverted lead is negative (default: p90 "
                                              "of the observed label lag)")]
Sustain = Annotated[str, typer.Option(help="retrain on drift in N of the last M windows")]
AucDrop = Annotated[float, typer.Option(help="retrain when a matured cohort's ROC AUC is this much (relative) below "
                                        "the test ROC AUC")]
PrecisionDrop = Annotated[float, typer.Option(help="retrain when even the 95 % upper bound of a matured cohort's "
                                              "top-decile precision is this much (relative) below the test figure")]
Cooldown = Annotated[str, typer.Option(help="no retrain sooner than this after the last one")]
AutoPromote = Annotated[bool, typer.Option("--auto-promote", help="move @champion when the gate passes (else the "
                                           "challenger awaits approval in the MLflow UI)")]
Tolerance = Annotated[float, typer.Option(help="the gate lets top-decile precision be this much lower")]
Trials = Annotated[int, typer.Option(help="tuning trials per member for the challenger")]
Epochs = Annotated[int, typer.Option(help="MLP epochs at most for the challenger")]


@monitor_app.command("run")
def run_command(model: ModelOption = None, window: WindowOption = "1d", until: UntilOption = None,
                performance_window: PerfWindow = "8w",
                maturity: Maturity = None, sustain: Sustain = "2/3", auc_drop: AucDrop = 0.05,
                cooldown: Cooldown = "24h", auto_promote: AutoPromote = False, trials: Trials = 0,
                max_epochs: Epochs = 20, precision_tolerance: Tolerance = 0.02,
                precision_drop: PrecisionDrop = 0.2) -> None:
    """One monitor cycle: drift, realized quality, and a retrain and gate when they call for it."""
    from monitoring.loop import cycle

    settings = _settings()
    options = _loop_options(window, performance_window, maturity, sustain, auc_drop, cooldown, auto_promote,
                            trials, max_epochs, precision_tolerance, precision_drop)
    from monitoring.windows import parse_time

    now = parse_time(until, "--until") if until else None
    decision = cycle(settings, model or settings.model_name, options, now=now, say=typer.echo)
    typer.echo(decision.line())
    typer.echo(f"Evidently UI: {settings.evidently_url}   Prometheus: {settings.prometheus_url}")


@monitor_app.command("watch")
def watch_command(every: Annotated[str, typer.Option(help="time between cycles: 30m, 1h, 1d")] = "1h",
                  cycles: Annotated[int | None, typer.Option(help="stop after this many cycles (default: never)")]
                  = None, model: ModelOption = None, window: WindowOption = "1d",
                  performance_window: PerfWindow = "8w", maturity: Maturity = None, sustain: Sustain = "2/3",
                  auc_drop: AucDrop = 0.05, cooldown: Cooldown = "24h", auto_promote: AutoPromote = False,
                  trials: Trials = 0, max_epochs: Epochs = 20, precision_tolerance: Tolerance = 0.02,
                  precision_drop: PrecisionDrop = 0.2) -> None:
    """Run a monitor cycle every period (the first at once) and serve the monitor's /metrics meanwhile."""
    import signal
    import threading

    from monitoring.loop import watch
    from monitoring.metrics import serve_metrics
    from monitoring.windows import parse_duration

    settings = _settings()
    options = _loop_options(window, performance_window, maturity, sustain, auc_drop, cooldown, auto_promote,
                            trials, max_epochs, precision_tolerance, precision_drop)
    period = parse_duration(every, "--every")
    name = model or settings.model_name
    server = serve_metrics(settings, [name])
    typer.echo(f"watching {name} every {every}; metrics: http://{settings.host}:{server.server_port}/metrics")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        failed = watch(settings, name, options, period, cycles, say=typer.echo, stop=stop)
    except KeyboardInterrupt:
        failed = 0
    server.shutdown()
    if cycles is not None and failed == cycles:
        raise typer.Exit(1)
