"""Commands for models: train, promote, explain. Heavy libraries are imported inside each command."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def _settings():
    from infra.config import Settings

    return Settings.load()


def known_services() -> list[str]:
    """Feature services defined in feature_repo/ (read from the files' text: no Feast import, no YAML parse)."""
    import re

    from infra.config import REPO_ROOT

    repo = REPO_ROOT / "feature_repo"
    found = re.findall(r'name="([a-z0-9_]+_v\d+)"', (repo / "feature_services.py").read_text()) \
        if (repo / "feature_services.py").exists() else []
    for spec in sorted((repo / "datasets").glob("*.yaml")):
        text = spec.read_text()
        name = re.search(r"^name:\s*([a-z][a-z0-9_]*)", text, re.M)
        version = re.search(r"^version:\s*(\d+)", text, re.M)
        view = re.search(r"^feature_view:\s*\S", text, re.M)
        if name and not view:
            found.append(f"{name.group(1)}_v{version.group(1) if version else 1}")
    return found


def train_command(
    feature_service: Annotated[str, typer.Option(
        "--feature-service", help="Feast feature service to train on; defined here: "
        + ", ".join(known_services()))],
    dataset: Annotated[str | None, typer.Option(help="label set (default: the service's dataset)")] = None,
    split: Annotated[str, typer.Option(help="auto (time if the rows' times differ, else random), random, time, or "
                                       "column:NAME (a marker column, with --test-values)")] = "auto",
    test_share: Annotated[float, typer.Option(help="share of rows held out for testing (random and time)")] = 0.2,
    cutoff: Annotated[str | None, typer.Option(help="with --split time: rows at or after this date are the test "
                                               "set, e.g. 2018-06-01")] = None,
    test_values: Annotated[str, typer.Option(help="with --split column:NAME: comma-separated marker values of "
                                             "test rows")] = "",
    train_values: Annotated[str, typer.Option(help="with --split column:NAME: marker values of training rows "
                                              "(default: every other row)")] = "",
    refit_all: Annotated[bool, typer.Option(help="after the held-out estimate is logged, refit the chosen "
                                            "configuration on every labelled row and register that")] = False,
    trials: Annotated[int, typer.Option(help="Optuna trials per member at most; 0 = default parameters")] = 100,
    budget: Annotated[float | None, typer.Option(help="seconds of tuning for all members together (default: 30 s "
                                                 "plus 1 s per 400 training rows, at most 900)")] = None,
    timeout: Annotated[float | None, typer.Option(help="seconds of tuning per member at most")] = None,
    folds: Annotated[int | None, typer.Option(help="cross-fitting folds (the stacker learns from out-of-fold "
                                              "predictions); default 5, 3 from 200,000 rows, 2 from 1,000,000")]
    = None,
    members: Annotated[str, typer.Option(help="comma-separated members")] = "linear,lightgbm,xgboost,mlp",
    max_epochs: Annotated[int, typer.Option(help="most epochs of the PyTorch member")] = 100,
    seed: Annotated[int, typer.Option(help="random seed of every member and study")] = 0,
    increasing: Annotated[str, typer.Option(help="comma-separated numeric features the score must never fall with "
                                            "(monotone constraints), e.g. time_on_website_s")] = "",
    model_name: Annotated[str | None, typer.Option(help="registered model name (default LEADSCORE_MODEL_NAME)")]
    = None,
    max_null_rate: Annotated[float, typer.Option(help="data check: most missing share allowed per feature")] = 0.95,
    min_positive: Annotated[float, typer.Option(help="data check: least share of converted leads")] = 0.005,
    max_positive: Annotated[float, typer.Option(help="data check: most share of converted leads")] = 0.995,
    tenant: Annotated[str | None, typer.Option(help="train on this tenant's leads only")] = None,
    all_tenants: Annotated[bool, typer.Option("--all-tenants", help="train on the leads of every tenant in the set "
                                              "(needed when it holds several)")] = False,
    progress: Annotated[bool, typer.Option(help="show progress bars")] = True,
) -> None:
    """Train the calibrated ensemble on a feature service, track it in MLflow, register it as @challenger."""
    import time

    from models.fit import FitOptions
    from models.split import SplitSpec
    from models.train import train
    from models.validate import SuiteOptions

    t0 = time.monotonic()
    try:
        split_spec = SplitSpec.parse(split, test_share, cutoff, train_values, test_values)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    options = FitOptions(members=tuple(m.strip() for m in members.split(",") if m.strip()), trials=trials,
                         budget=budget, timeout=timeout, folds=folds, seed=seed, max_epochs=max_epochs,
                         split=split_spec, progress=progress,
                         increasing=tuple(f.strip() for f in increasing.split(",") if f.strip()))
    suite = SuiteOptions(max_null_rate=max_null_rate, min_positive=min_positive, max_positive=max_positive)
    from compliance.tenants import TenantError

    try:
        out = train(_settings(), feature_service, options, dataset, model_name, suite, say=typer.echo,
                    refit_all=refit_all, tenant=tenant, all_tenants=all_tenants)
    except TenantError as exc:
        raise typer.BadParameter(str(exc), param_hint="--tenant/--all-tenants") from None
    shown = out.estimate or out.result
    for name, m in shown.test_metrics.items():
        typer.echo(f"  {name:9s} test ROC AUC {m['roc_auc']:.4f}  PR AUC {m['pr_auc']:.4f}  log loss "
                   f"{m['log_loss']:.4f}  Brier {m['brier']:.4f}  ECE {m['ece']:.4f}  precision@10% "
                   f"{m['precision_at_10']:.3f}")
    typer.echo(f"done in {time.monotonic() - t0:.0f} s: {out.model_name} version {out.version} is @challenger; "
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
