"""Commands for the feature store: apply the Feast repo, ingest CRM files, replace datasets, materialize, read."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

ingest_app = typer.Typer(help="Load data into the offline store.", no_args_is_help=True)
features_app = typer.Typer(help="The Feast repo: apply it, read features online, build training sets.",
                           no_args_is_help=True)
dataset_app = typer.Typer(help="The datasets the specs describe: what each stored; replace one from scratch.",
                          no_args_is_help=True)
log = logging.getLogger("leadscore.materialize")


def _settings():
    from infra.config import Settings

    return Settings.load()


def _fail(message: object) -> None:
    """One red line on stderr and exit 1: a problem the user can fix, never a traceback."""
    typer.secho(f"error: {message}", fg="red", err=True)
    raise typer.Exit(1)


def _stdin_is_tty() -> bool:
    return sys.stdin.isatty()


@ingest_app.command("crm")
def ingest_crm_command(
    file: Annotated[Path, typer.Argument(help="CRM export: .csv (optionally .gz) or .parquet")],
    spec: Annotated[Path, typer.Option("--spec", help="dataset spec YAML, e.g. feature_repo/datasets/x.yaml")],
    chunk_rows: Annotated[int, typer.Option(help="rows per chunk")] = 50_000,
    tenant: Annotated[str | None, typer.Option(help="the tenant (broker firm or CRM) the leads belong to "
                                               "(default: the spec's `tenant`, else `default`)")] = None,
) -> None:
    """Load a CRM export into the offline store by its spec; rejected rows are kept with their reason."""
    from pipelines.ingest import ingest_crm
    from pipelines.spec import SpecError, load_spec

    try:
        result = ingest_crm(_settings(), file, load_spec(spec), chunk_rows=chunk_rows, tenant=tenant)
    except SpecError as exc:
        _fail(exc)
    if result.read_as:
        typer.echo(f"  read as: {result.read_as}")
    typer.echo(f"{result.dataset}: read {result.rows_read}, loaded {result.rows_loaded}, "
               f"rejected {result.rows_rejected}")
    for reason, count in result.reasons.most_common(5):
        typer.echo(f"  rejected {count}: {reason}")
    if result.rows_erased:
        typer.echo(f"  skipped {result.rows_erased} row(s) of erased leads dated before their erasure "
                   "(compliance.erasure_list)")
    if result.rows_rejected:
        typer.echo(f"  every rejected row and its reason: table offline.ingest_rejects, "
                   f"file_sha256 = '{result.file_sha256[:12]}...'")
    if result.unused_columns:
        typer.echo(f"  columns not named in the spec (not stored): {', '.join(result.unused_columns)}")
    if result.rows_loaded == 0:
        why = "every row was rejected or belongs to an erased lead" if result.rows_erased else "every row was rejected"
        typer.secho(f"error: nothing was loaded: {why} (see above)", fg="red", err=True)
        raise typer.Exit(1)


@ingest_app.command("market")
def ingest_market_command(
    city: Annotated[list[str] | None,
                    typer.Option("--city", help="cities to load (default: leads' cities + IN)")] = None,
) -> None:
    """Load the RBI repo-rate history (feature_repo/data/rbi_repo_rate.csv) into the market context table."""
    from pipelines.market import load_repo_rate

    rows = load_repo_rate(_settings(), city or None)
    typer.echo(f"market context: {rows} city x rate-change rows upserted")


def parse_interval(text: str) -> float:
    """'15m' -> 900.0 seconds; accepts s, m, h."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smh])", text.strip())
    if not match or float(match.group(1)) <= 0:
        raise typer.BadParameter(f"{text!r} is not an interval like 30s, 15m or 1h", param_hint="--every")
    return float(match.group(1)) * {"s": 1, "m": 60, "h": 3600}[match.group(2)]


def materialize_command(
    view: Annotated[list[str] | None, typer.Option("--view", help="only this feature view (repeatable)")] = None,
    every: Annotated[str | None, typer.Option("--every", help="repeat on an interval, e.g. 15m")] = None,
    runs: Annotated[int | None, typer.Option(help="with --every: stop after this many runs")] = None,
) -> None:
    """Move the latest offline rows of consenting leads to Redis; with --every, keep doing it on a schedule."""
    from pipelines.materialize import materialize

    settings = _settings()
    if every is None:
        for r in materialize(settings, view or None):
            if r.note:
                typer.echo(f"{r.feature_view}: {r.note}")
                continue
            typer.echo(f"{r.feature_view}: wrote {r.rows_written} rows, removed {r.rows_skipped_no_consent} "
                       f"without consent, {r.seconds:.1f} s")
        return
    interval = parse_interval(every)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    done = 0
    while runs is None or done < runs:
        started = time.monotonic()
        try:
            results = materialize(settings, view or None)
            log.info("materialize ok: %d rows in %.1f s (%s)", sum(r.rows_written for r in results),
                     time.monotonic() - started, ", ".join(f"{r.feature_view}={r.rows_written}" for r in results))
        except Exception as exc:  # noqa: BLE001 - a failed run is logged and the schedule goes on
            log.error("materialize failed: %s; next run in %s", exc, every)
        done += 1
        if runs is not None and done >= runs:
            break
        time.sleep(max(0.0, interval - (time.monotonic() - started)))


@features_app.command("apply")
def features_apply() -> None:
    """Register the repo's entities, sources, views and services (`feast apply` with this machine's config)."""
    from pipelines.feature_store import apply

    apply(_settings())
    typer.echo("feature repo applied")


@features_app.command("env")
def features_env() -> None:
    """Print `export` lines so plain `feast` commands in feature_repo/ reach this machine's servers."""
    import shlex

    for key, value in _settings().feast_env().items():
        typer.echo(f"export {key}={shlex.quote(value)}")


@features_app.command("online")
def features_online(
    lead_ids: Annotated[list[str], typer.Argument(help="one or more lead ids")],
    service: Annotated[str, typer.Option(help="feature service")] = "lead_scoring_v1",
) -> None:
    """Print leads' online feature vectors as JSON."""
    from pipelines.feature_store import feature_store
    from pipelines.online import online_features

    rows = online_features(feature_store(_settings()), service, lead_ids)
    typer.echo(json.dumps(rows, indent=2, default=str))


@features_app.command("training-set")
def features_training_set(
    service: Annotated[str, typer.Option(help="feature service, e.g. xeducation_v1")],
    out: Annotated[Path, typer.Option(help="write the set here (.parquet or .csv)")],
    dataset: Annotated[str | None, typer.Option(help="label set (default: the service's dataset)")] = None,
) -> None:
    """Build a point-in-time-correct training set (labels + features as of each label's time)."""
    from pipelines.training_data import build_training_set

    frame = build_training_set(_settings(), service, dataset)
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(out, index=False) if out.suffix == ".parquet" else frame.to_csv(out, index=False)
    positives = int(frame["label"].sum())
    typer.echo(f"{len(frame)} rows ({positives} positive), {frame.shape[1] - 3} features -> {out}")


@dataset_app.command("list")
def dataset_list() -> None:
    """Each dataset (every spec, then ingested datasets whose spec is gone): its table's rows, labels, rejects."""
    from pipelines.dataset import list_datasets

    infos = list_datasets(_settings())
    typer.echo(f"{'dataset':<24} {'table':<32} {'rows':>9} {'labels':>9} {'rejects':>8} {'runs':>5}  spec")
    for i in infos:
        rows = "-" if i.rows is None else str(i.rows)
        spec = str(i.spec_path.relative_to(Path.cwd())) if i.spec_path and i.spec_path.is_relative_to(Path.cwd()) \
            else str(i.spec_path or "(no spec)")
        typer.echo(f"{i.name:<24} {i.table:<32} {rows:>9} {i.counts['labels']:>9} {i.counts['ingest_rejects']:>8} "
                   f"{i.counts['ingest_runs']:>5}  {spec}" + (f" (view {i.hand_written})" if i.hand_written else ""))


@dataset_app.command("drop")
def dataset_drop(
    name: Annotated[str, typer.Argument(help="the dataset's name (its spec's `name:`)")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="drop without asking")] = False,
) -> None:
    """Delete a spec-generated dataset: table, labels, rejects, runs, online fields and registry entries."""
    from pipelines.dataset import DatasetError, drop_dataset, plan_drop
    from pipelines.spec import SpecError

    settings = _settings()
    try:
        info, _ = plan_drop(settings, name)
    except (DatasetError, SpecError) as exc:
        _fail(exc)
    if not yes:
        if not _stdin_is_tty():
            _fail(f"not dropping dataset {name!r} without confirmation: there is no terminal to ask on; "
                  f"pass --yes to drop it ({info.summary()})")
        if not typer.confirm(f"drop dataset {name!r}: {info.summary()}, its online fields and registry entries? "
                             "This cannot be undone", default=False):
            typer.echo("nothing dropped")
            raise typer.Exit(1)
    try:
        result = drop_dataset(settings, name)
    except (DatasetError, SpecError) as exc:
        _fail(exc)
    typer.echo(f"dropped dataset {name}: {result.info.summary()}; Redis: {result.online_fields} fields of view "
               f"{name} removed from {result.online_keys} lead keys; registry: "
               f"{', '.join(result.registry) or 'nothing registered'}; audit_log id {result.audit_id}")
    typer.echo("  consent records kept (compliance.consent belongs to the lead, not to one dataset)")
    if result.info.spec_path:
        typer.echo(f"  the spec {result.info.spec_path} still exists: the next `leadscore features apply` registers "
                   f"an empty view {name} again; ingest again to replace the dataset, or move the spec away to "
                   "retire it")
