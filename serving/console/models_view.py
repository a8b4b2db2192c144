"""The data scientists' page: champion and challenger side by side, drift and realized quality from the monitor,
alerts firing in Prometheus, links to the MLflow and Evidently UIs.

MLflow is read as the scoring service's read-only registry user (its environment), the monitor's results from
monitoring.results as the console's role (migration 0020: aggregates only, no lead rows), the alerts from
Prometheus's HTTP API. Each source that does not answer becomes one line on the page; the rest still shows.
"""

from __future__ import annotations

import base64
import json
import logging
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from serving.db import Db

log = logging.getLogger("leadscore.console")
ALIASES = ("champion", "challenger")
METRICS = (("test_roc_auc", "ROC AUC (held out)"), ("test_pr_auc", "PR AUC"), ("test_log_loss", "log loss"),
           ("test_brier", "Brier score"), ("test_ece", "calibration error (ECE)"),
           ("test_precision_at_10", "precision in the top 10 %"), ("test_recall_at_10", "recall in the top 10 %"),
           ("cv_roc_auc", "ROC AUC (cross-validated)"))
PLOTS = (("calibration", "plots/calibration.png"), ("lift", "plots/lift_gains.png"))
_plots: dict[tuple[str, str], str | None] = {}  # (run id, artifact) -> data URI (None: the run has no such plot)


def _plot(tracking_uri: str, run_id: str, artifact: str) -> str | None:
    """The run's plot as a data: URI (the page's CSP allows images from data:), cached per run."""
    if (run_id, artifact) not in _plots:
        import mlflow

        try:
            with tempfile.TemporaryDirectory() as tmp:
                path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact, dst_path=tmp,
                                                           tracking_uri=tracking_uri)
                data = Path(path).read_bytes()
            _plots[(run_id, artifact)] = "data:image/png;base64," + base64.b64encode(data).decode()
        except Exception as exc:  # noqa: BLE001 - a run without the plot: the page says so
            log.info("no %s for run %s: %s", artifact, run_id, exc)
            _plots[(run_id, artifact)] = None
    return _plots[(run_id, artifact)]


def versions(settings: Any) -> dict[str, Any]:  # noqa: ANN401 - infra.config.Settings
    """Champion and challenger: version, run, metrics and plots; or the line that says why not."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    name, uri = settings.model_name, settings.tracking_uri
    client = MlflowClient(uri)
    held: dict[str, Any] = {}
    for alias in ALIASES:
        try:
            mv = client.get_model_version_by_alias(name, alias)
        except MlflowException as exc:
            if "not found" in str(exc).lower() or "RESOURCE_DOES_NOT_EXIST" in str(exc):
                held[alias] = None
                continue
            raise
        run = client.get_run(mv.run_id) if mv.run_id else None
        metrics = run.data.metrics if run else {}
        created = datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")
        held[alias] = {"version": mv.version, "run_id": mv.run_id, "created": created,
                       "feature_service": (run.data.tags.get("feature_service") if run else None)
                       or (run.data.params.get("feature_service") if run else None),
                       "metrics": {key: metrics.get(key) for key, _ in METRICS},
                       "plots": {label: _plot(uri, mv.run_id, path) for label, path in PLOTS} if mv.run_id else {},
                       "url": f"{uri}/#/models/{name}/versions/{mv.version}"}
    same = bool(held.get("champion") and held.get("challenger")
                and held["champion"]["version"] == held["challenger"]["version"])
    return {"name": name, "held": held, "same": same, "labels": METRICS, "registry_url": f"{uri}/#/models/{name}"}


def monitor(db: Db, model_name: str) -> dict[str, Any]:
    """The newest drift and performance results of the model (any version) and the loop's last decision."""
    with db.conn() as conn:
        rows = conn.execute("""SELECT DISTINCT ON (kind) kind, at, model_version, window_start, window_end, rows,
                drifted, summary FROM monitoring.results WHERE model_name = %s ORDER BY kind, at DESC""",
                            (model_name,)).fetchall()
    out: dict[str, Any] = {}
    for kind, at, version, start, end, n, drifted, summary in rows:
        summary = summary if isinstance(summary, dict) else json.loads(summary or "{}")
        out[kind] = {"at": at, "version": version, "start": start, "end": end, "rows": n, "drifted": drifted,
                     "summary": summary}
    drift = out.get("drift")
    if drift:
        features = drift["summary"].get("features") or {}
        drift["features"] = sorted(features.values(), key=lambda f: (not f.get("drifted"), f.get("column", "")))
    performance = out.get("performance")
    if performance:
        performance["cohorts"] = performance["summary"].get("cohorts") or []
    return out


def alerts(prometheus_url: str, timeout_s: float = 2.0) -> list[dict[str, Any]]:
    """Alerts pending or firing in Prometheus (raises httpx.HTTPError when it does not answer)."""
    import httpx

    response = httpx.get(f"{prometheus_url}/api/v1/alerts", timeout=timeout_s)
    response.raise_for_status()
    found = response.json().get("data", {}).get("alerts", [])
    return sorted(({"name": a.get("labels", {}).get("alertname", "?"), "state": a.get("state"),
                    "severity": a.get("labels", {}).get("severity", ""), "since": a.get("activeAt", ""),
                    "summary": (a.get("annotations") or {}).get("summary", "")} for a in found),
                  key=lambda a: (a["state"] != "firing", a["name"]))
