"""Commands for models: train, promote, explain. Heavy libraries are imported inside each command."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def _settings():
    from infra.config import Settings

    return Settings.load()


def train_command(
    feature_service: Annotated[str, typer.Option("--feature-service", help="Feast feature service to train on")]
    = "lead_scoring_v1",
    dataset: Annotated[str | None, typer.Option(help="label set (default: the service's dataset)")] = None,
    trials: Annotated[int, typer.Option(help="Optuna trials per member; 0 = default parameters, no tuning")] = 10,
    timeout: Annotated[float, typer.Option(help="seconds of tuning per member at most")] = 60.0,
    members: Annotated[str, typer.Option(help="comma-separated members")] = "xgboost,lightgbm,mlp",
    max_epochs: Annotated[int, typer.Option(help="most epochs of the PyTorch member")] = 100,
    seed: Annotated[int, typer.Option(help="random seed of every member and study")] = 0,
    increasing: Annotated[str, typer.Option(help="comma-separated numeric features the score must never fall with "
                                            "(monotone constraints), e.g. time_on_website_s")] = "",
    model_name: Annotated[str | None, typer.Option(help="registered model name (default LEADSCORE_MODEL_NAME)")]
    = None,
    max_null_rate: Annotated[float, typer.Option(help="data check: most missing share allowed per feature")] = 0.95,
    min_positive: Annotated[float, typer.Option(help="data check: least share of converted leads")] = 0.005,
    max_positive: Annotated[float, typer.Option(help="data check: most share of converted leads")] = 0.995,
    progress: Annotated[bool, typer.Option(help="show progress bars")] = True,
) -> None:
    """Train the calibrated ensemble on a feature service, track it in MLflow, register it as @challenger."""
    from models.fit import FitOptions
    from models.train import train
    from models.validate import SuiteOptions

    options = FitOptions(members=tuple(m.strip() for m in members.split(",") if m.strip()), trials=trials,
                         timeout=timeout, seed=seed, max_epochs=max_epochs, progress=progress,
                         increasing=tuple(f.strip() for f in increasing.split(",") if f.strip()))
    suite = SuiteOptions(max_null_rate=max_null_rate, min_positive=min_positive, max_positive=max_positive)
    out = train(_settings(), feature_service, options, dataset, model_name, suite, say=typer.echo)
    for name, m in out.result.test_metrics.items():
        typer.echo(f"  {name:9s} test ROC AUC {m['roc_auc']:.4f}  PR AUC {m['pr_auc']:.4f}  log loss "
                   f"{m['log_loss']:.4f}  Brier {m['brier']:.4f}  ECE {m['ece']:.4f}  precision@10% "
                   f"{m['precision_at_10']:.3f}")
    typer.echo(f"done in {out.result.seconds['total']:.0f} s: {out.model_name} version {out.version} is @challenger; "
               f"`leadscore promote` makes it @champion if it is at least as good")


def promote_command(
    model_name: Annotated[str | None, typer.Option(help="registered model name (default LEADSCORE_MODEL_NAME)")]
    = None,
    min_auc_gain: Annotated[float, typer.Option(help="challenger ROC AUC must beat the champion's by this")] = 0.0,
    max_logloss_increase: Annotated[float, typer.Option(help="log loss may rise by at most this")] = 0.0,
    dry_run: Annotated[bool, typer.Option(help="compare and print, move nothing, record nothing")] = False,
) -> None:
    """Move @champion to @challenger if it is at least as good on the same held-out leads; tag the decision."""
    from models.promote import promote

    d = promote(_settings(), model_name, min_auc_gain, max_logloss_increase, dry_run)
    verdict = "promoted" if d.promoted else "kept"
    who = f"version {d.challenger}" if d.promoted else f"version {d.champion}"
    typer.echo(f"{d.model_name}: {verdict} {who} as @champion{' (dry run)' if dry_run else ''}: {d.reason}")


def explain_command(
    file: Annotated[Path, typer.Argument(help=".parquet or .csv of leads with the model's feature columns")],
    model: Annotated[str, typer.Option(help="model URI")] = "models:/lead-scorer@champion",
    rows: Annotated[int, typer.Option(help="explain the first N leads")] = 3,
    top_k: Annotated[int, typer.Option(help="contributions shown per side")] = 5,
) -> None:
    """Score leads with a registered model and print each one's tier and top signed feature contributions."""
    from models.explain import explain_frame, load_scorer, read_leads

    _, scorer = load_scorer(_settings(), model)
    for row in explain_frame(scorer, read_leads(file, rows), top_k):
        typer.echo(json.dumps(row, default=str))
