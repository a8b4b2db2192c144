"""`leadscore score-batch`: the champion's scores for every consenting lead, in bulk (serving/batch.py)."""

from __future__ import annotations

from typing import Annotated

import typer


def score_batch_command(
        model_name: Annotated[str | None, typer.Option(help="registered model (default LEADSCORE_MODEL_NAME)")] = None,
        alias: Annotated[str, typer.Option(help="the version to use, by alias")] = "champion",
        tenant: Annotated[str | None, typer.Option(help="only this tenant's leads (default: every tenant)")] = None,
        ray: Annotated[bool, typer.Option("--ray", help="score on Ray Data (a local cluster unless --ray-address)")]
        = False,
        ray_address: Annotated[str | None, typer.Option(help="an existing Ray cluster (implies --ray)")] = None,
        workers: Annotated[int, typer.Option(min=1, max=256, help="Ray workers (one CPU each)")] = 2,
        batch_rows: Annotated[int, typer.Option(min=1, max=1_000_000, help="leads per scoring call")] = 5000,
        progress: Annotated[bool, typer.Option(help="a progress bar (one process)")] = True,
) -> None:
    """Score every consenting lead the online store holds with MODEL@ALIAS into serving.batch_scores (one run id,
    one row per lead: tenant, lead, score, tier, version) for a CRM to read."""
    from tqdm import tqdm

    from infra.config import Settings
    from serving.batch import score_batch

    settings = Settings.load()
    with tqdm(unit=" leads", desc="score-batch", disable=not progress or ray or bool(ray_address)) as bar:
        done = score_batch(settings, model_name, alias, tenant, ray_address, ray, workers, batch_rows,
                           say=lambda line: typer.echo(line, err=True), progress=bar.update)
    typer.echo(f"run {done.run_id}: {done.scored:,} of {done.leads:,} consenting leads scored by {done.model_name} "
               f"version {done.model_version} on {done.engine} in {done.seconds:.1f} s "
               f"({done.scored / max(done.score_seconds, 1e-9):,.0f} leads/s scoring); {done.not_online:,} not in "
               "the online store (materialize them first)")
    typer.echo(f"read them: SELECT lead_id, score, tier FROM serving.batch_scores WHERE run_id = '{done.run_id}'")
