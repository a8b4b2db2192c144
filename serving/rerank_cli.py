"""`leadscore rerank ...`: the text re-ranker's offline jobs. Heavy libraries are imported inside each command."""

from __future__ import annotations

from typing import Annotated

import typer

rerank_app = typer.Typer(help="The text re-ranker: fit its blender, measure it, store lead text signals.",
                         no_args_is_help=True)


@rerank_app.command("fit")
def fit_command(
    model_name: Annotated[str | None, typer.Option(help="base model whose @champion is blended (default "
                                                   "LEADSCORE_MODEL_NAME); the blender is <name>-reranker")] = None,
    dataset: Annotated[str, typer.Option(help="labelled dataset whose leads are split")] = "broker_leads",
    feature_service: Annotated[str | None, typer.Option(help="feature service of the ensemble's features (default: "
                                                        "the champion's)")] = None,
    split: Annotated[str, typer.Option(help="holdout: reference = the leads the champion was fitted on, fit/test = "
                                       "its held-out leads (ensemble scores out of sample); random: all labelled "
                                       "leads split by the shares below")] = "holdout",
    seed: Annotated[int, typer.Option(help="seed of the reference / fit / test split")] = 0,
    reference: Annotated[float, typer.Option(help="share of leads whose labels vote as neighbours")] = 0.5,
    fit: Annotated[float, typer.Option(help="share of leads the blender is fitted on (the rest is the test); with "
                                       "--split holdout, fit/(1-reference) of the held-out leads")]
    = 0.25,
    k: Annotated[int, typer.Option(help="neighbouring leads that vote")] = 20,
    pool: Annotated[int, typer.Option(help="nearest messages searched at serving time")] = 100,
    shrink: Annotated[float, typer.Option(help="pseudo-count of the base rate in the vote")] = 3.0,
) -> None:
    """Fit the text re-ranker on held-out leads, log with/without metrics to MLflow, register it @champion."""
    from infra.config import Settings
    from serving.rerank_fit import fit_reranker
    from serving.reranker import SignalParams

    try:
        result = fit_reranker(Settings.load(), model_name, dataset, feature_service, seed, reference, fit,
                              SignalParams(k, pool, shrink), say=typer.echo, split=split)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(result.summary())
