"""Where monitor results go: an HTML file, `monitoring.results`, an MLflow monitoring run, the Evidently UI.

Everything published is aggregate: per-feature scores and shares, row counts, cohort metrics. Evidently snapshots
are sent without their data (`include_data=False`), MLflow gets figures and the HTML (histograms of a sample, no
row), and `monitoring.results` holds the same summaries.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from infra.config import Settings
from monitoring.windows import ModelRef

MONITOR_EXPERIMENT = "leadscore-monitoring"


def quiet_evidently() -> None:
    """Import Evidently (and its UI client's server stack) with their own deprecation warnings silenced."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import evidently.metrics  # noqa: F401
        import evidently.presets  # noqa: F401
        import evidently.ui.workspace  # noqa: F401


def save_html(snapshot, path: Path) -> Path:  # noqa: ANN001 - evidently Snapshot
    """The report as one self-contained HTML file (Evidently inlines its scripts: nothing loads from a CDN)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(path))
    return path


def record_result(settings: Settings, kind: str, ref: ModelRef, start: datetime | None, end: datetime | None,
                  rows: int, drifted: bool | None, summary: dict) -> int:
    """One row of monitoring.results; returns its id."""
    import psycopg

    with psycopg.connect(settings.pg_dsn(role="monitor")) as conn:
        return conn.execute(
            "INSERT INTO monitoring.results (kind, model_name, model_version, window_start, window_end, rows, "
            "drifted, summary) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (kind, ref.name, ref.version, start, end, rows, drifted, json.dumps(summary, default=float))).fetchone()[0]


def log_monitor_run(settings: Settings, ref: ModelRef, kind: str, start: datetime | None, end: datetime | None,
                    metrics: dict[str, float], summary: dict, html: Path | None, tags: dict[str, str] | None = None
                    ) -> str:
    """An MLflow run in the monitoring experiment, tagged with the model version; returns its id."""
    import mlflow
    from mlflow import MlflowClient

    from models.train import configure_mlflow

    configure_mlflow(settings)
    client = MlflowClient()
    found = client.get_experiment_by_name(MONITOR_EXPERIMENT)
    experiment = found.experiment_id if found else client.create_experiment(MONITOR_EXPERIMENT)
    when = f"{end:%Y-%m-%d %H:%M}" if end else "now"
    run_tags = {"leadscore.step": "monitor", "leadscore.monitor": kind, "model_name": ref.name,
                "model_version": ref.version, "model_run_id": ref.run_id,
                "window_start": start.isoformat() if start else "", "window_end": end.isoformat() if end else "",
                **(tags or {})}
    with mlflow.start_run(experiment_id=experiment, run_name=f"{kind} {ref.name} v{ref.version} {when}",
                          tags=run_tags) as run:
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v is not None and v == v})
        mlflow.log_dict(summary, f"{kind}/summary.json")
        if html is not None:
            mlflow.log_artifact(str(html), kind)
    return run.info.run_id


def _workspace(settings: Settings):  # noqa: ANN202 - evidently RemoteWorkspace
    quiet_evidently()
    from evidently.ui.workspace import RemoteWorkspace

    return RemoteWorkspace(settings.evidently_url, secret=settings.secret("evidently"))


def _project(workspace, name: str):  # noqa: ANN001, ANN202 - evidently workspace and project
    """The model's project, created with its dashboard the first time."""
    found = workspace.search_project(name)
    if found:
        if not found[0].dashboard.model().panels:  # created by a run that stopped before its dashboard
            _dashboard(found[0])
        return found[0]
    project = workspace.create_project(name, description=f"LeadScore model {name}: drift and realized quality of "
                                                          "its served scores, one snapshot per monitor run")
    _dashboard(project)
    return project


def _dashboard(project) -> None:  # noqa: ANN001 - evidently Project
    from evidently.sdk.models import PanelMetric
    from evidently.sdk.panels import line_plot_panel

    project.dashboard.add_panel(line_plot_panel(
        title="Share of drifted features", description="DataDriftPreset over the served features, per monitor run",
        values=[PanelMetric(legend="drifted share", metric="DriftedColumnsCount",
                            metric_labels={"value_type": "share"})], size="half"))
    project.dashboard.add_panel(line_plot_panel(
        title="Prediction drift", description="ValueDrift of the served score against the reference",
        values=[PanelMetric(legend="score drift", metric="ValueDrift", metric_labels={"column": "score"})],
        size="half"))
    project.dashboard.add_panel(line_plot_panel(
        title="Realized ROC AUC", description="matured cohorts of scored leads",
        values=[PanelMetric(legend="ROC AUC", metric="RocAuc")], size="half"))


def to_evidently_ui(settings: Settings, ref: ModelRef, snapshot) -> str:  # noqa: ANN001 - evidently Snapshot
    """Add the snapshot (without data) to the model's project; returns the project's id."""
    workspace = _workspace(settings)
    project = _project(workspace, ref.name)
    workspace.add_run(project.id, snapshot, include_data=False)
    return str(project.id)
