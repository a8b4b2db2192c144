"""`leadscore monitor drift`: the features and scores the champion served in a window against its reference.

The verdicts (per feature, the drifted share, prediction drift) use every row and Evidently's own default methods
(monitoring/stattests.py). The Evidently report - `DataDriftPreset` over the features and `ValueDrift` on the
score - is rendered on a uniform sample of each side (LEADSCORE_DRIFT_REPORT_ROWS, 10,000 by default) with each
column's method fixed to the whole-data choice: the HTML and the Evidently UI show the same methods, with scores
that estimate the exact ones; Evidently computes correlations and plots over every row it is given, which is where
its time goes on large windows (its issue #1526). The report is saved as HTML, logged to an MLflow monitoring run
tagged with the model version, added as a snapshot to the model's Evidently UI project, and summarised in
`monitoring.results`, the history the watch loop and the Prometheus gauges read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pandas as pd

from infra.config import Settings
from monitoring.stattests import ColumnDrift, column_drift
from monitoring.windows import ModelRef, MonitorError, count_scored, load_reference, load_served, model_ref

DRIFT_SHARE = 0.5  # Evidently's default: the dataset drifted when at least this share of features did
REPORT_ROWS = 10_000
MIN_ROWS = 30  # fewer served rows than this in a window: no verdict (too few to compare)


def evidently_kind(kind: str) -> str:
    """A reference summary's type as Evidently's column type (dates are numbers of days)."""
    return "categorical" if kind == "categorical" else "numerical"


@dataclass
class DriftResult:
    """The drift of one window: per feature, the drifted share and the prediction (score) drift."""

    columns: list[ColumnDrift]
    prediction: ColumnDrift | None
    reference_rows: int
    current_rows: int
    skipped: dict[str, str] = field(default_factory=dict)  # feature -> why it has no score
    drift_share_threshold: float = DRIFT_SHARE

    @property
    def drifted(self) -> list[ColumnDrift]:
        return [c for c in self.columns if c.drifted]

    @property
    def share(self) -> float:
        return len(self.drifted) / len(self.columns) if self.columns else 0.0

    @property
    def dataset_drift(self) -> bool:
        return bool(self.columns) and self.share >= self.drift_share_threshold

    def summary(self) -> dict:
        return {"reference_rows": self.reference_rows, "current_rows": self.current_rows,
                "drift_share": self.share, "dataset_drift": self.dataset_drift,
                "drift_share_threshold": self.drift_share_threshold,
                "drifted_features": [c.column for c in self.drifted],
                "prediction": self.prediction.as_dict() if self.prediction else None,
                "features": {c.column: c.as_dict() for c in self.columns}, "skipped": self.skipped}


def compute_drift(reference: pd.DataFrame, current: pd.DataFrame, kinds: dict[str, str],
                  drift_share: float = DRIFT_SHARE) -> DriftResult:
    """Whole-column drift of every feature in `kinds` and of the score."""
    columns, skipped = [], {}
    for name, kind in kinds.items():
        found = column_drift(name, reference[name], current[name], evidently_kind(kind))
        if found is None:
            skipped[name] = "no value on one side (all missing)"
        else:
            columns.append(found)
    prediction = column_drift("score", reference["score"], current["score"], "numerical")
    return DriftResult(columns, prediction, len(reference), len(current), skipped, drift_share)


def _sample(frame: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    return frame if len(frame) <= rows else frame.sample(n=rows, random_state=seed).sort_index()


def evidently_snapshot(reference: pd.DataFrame, current: pd.DataFrame, kinds: dict[str, str], result: DriftResult,
                       rows: int = REPORT_ROWS, timestamp: datetime | None = None, tags: list[str] | None = None,
                       metadata: dict[str, str] | None = None):  # noqa: ANN201 - evidently Snapshot
    """Evidently's report on a sample of each side, every column's method fixed to the whole-data choice."""
    import logging

    from monitoring.publish import quiet_evidently

    quiet_evidently()
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset

    logging.getLogger("evidently").setLevel(logging.ERROR)
    scored = [c.column for c in result.columns]
    methods = {c.column: c.method for c in result.columns}
    numerical = [c for c in scored if evidently_kind(kinds[c]) == "numerical"]
    definition = DataDefinition(numerical_columns=[*numerical, "score"],
                                categorical_columns=[c for c in scored if c not in numerical])
    metrics = [DataDriftPreset(columns=scored, per_column_method=methods, drift_share=result.drift_share_threshold)]
    if result.prediction is not None:
        metrics.append(ValueDrift(column="score", method=result.prediction.method))
    keep = [*scored, "score"]
    ref = _sample(reference[keep], max(rows, 1001), seed=1)  # above 1,000 rows the default methods stay the same
    cur = _sample(current[keep], rows, seed=2)
    report = Report(metrics)
    return report.run(Dataset.from_pandas(cur, data_definition=definition),
                      Dataset.from_pandas(ref, data_definition=definition), timestamp=timestamp, tags=tags or [],
                      metadata=metadata or {})


@dataclass
class DriftOutcome:
    """What `monitor drift` did: the figures, where the report went, and what could not be published."""

    model: ModelRef
    start: datetime
    end: datetime
    result: DriftResult
    scored: int  # scores in the window (logged features or not)
    html: Path | None = None
    mlflow_run_id: str | None = None
    evidently_project: str | None = None
    result_id: int | None = None
    problems: list[str] = field(default_factory=list)  # publishing steps that failed (the figures stand)


def report_dir(settings: Settings, model_name: str) -> Path:
    return settings.state_dir / "monitoring" / "reports" / model_name


def run_drift(settings: Settings, model_name: str, start: datetime, end: datetime, publish: bool = True,
              ref: ModelRef | None = None) -> DriftOutcome:
    """Drift of the champion's served features in [start, end) against its reference; report and record it."""
    from monitoring.publish import log_monitor_run, record_result, save_html, to_evidently_ui

    ref = ref or model_ref(settings, model_name)
    scored, logged = count_scored(settings, ref, start, end)
    if logged < MIN_ROWS:
        why = (f"{scored} scores, none with logged features (LEADSCORE_FEATURE_LOG_SAMPLE is 0?)" if scored and not
               logged else f"{logged} scores with features" if logged else "nothing scored")
        raise MonitorError(f"{ref.name} v{ref.version} has {why} between {start:%Y-%m-%d %H:%M} and "
                           f"{end:%Y-%m-%d %H:%M} UTC: at least {MIN_ROWS} are needed; widen --window or --since")
    current = load_served(settings, ref, start, end)
    reference = load_reference(settings, ref)
    result = compute_drift(reference, current, ref.kinds,
                           float(settings.env.get("LEADSCORE_DRIFT_SHARE", DRIFT_SHARE)))
    outcome = DriftOutcome(ref, start, end, result, scored)
    if not publish:
        return outcome
    rows = int(settings.env.get("LEADSCORE_DRIFT_REPORT_ROWS", REPORT_ROWS))
    meta = {"model": ref.name, "version": ref.version, "window_start": start.isoformat(),
            "window_end": end.isoformat()}
    snapshot = evidently_snapshot(reference, current, ref.kinds, result, rows, end,
                                  [f"model:{ref.name}", f"version:{ref.version}", "drift"], meta)
    name = f"drift-v{ref.version}-{end:%Y%m%dT%H%M%S}.html"
    outcome.html = save_html(snapshot, report_dir(settings, ref.name) / name)
    outcome.result_id = record_result(settings, "drift", ref, start, end, result.current_rows, result.dataset_drift
                                      or bool(result.prediction and result.prediction.drifted), result.summary())
    for step, fn in (("MLflow", lambda: log_monitor_run(settings, ref, "drift", start, end, drift_metrics(result),
                                                         result.summary(), outcome.html)),
                     ("the Evidently UI", lambda: to_evidently_ui(settings, ref, snapshot))):
        try:
            value = fn()
        except Exception as exc:  # noqa: BLE001 - the figures stand; say what did not get published and why
            outcome.problems.append(f"not sent to {step}: {str(exc).splitlines()[0][:200]}")
            continue
        if step == "MLflow":
            outcome.mlflow_run_id = value
        else:
            outcome.evidently_project = value
    return outcome


def drift_metrics(result: DriftResult) -> dict[str, float]:
    """The figures logged to MLflow (metric names are feature names: no lead data)."""
    out = {"drift_share": result.share, "drifted_features": float(len(result.drifted)),
           "dataset_drift": float(result.dataset_drift), "current_rows": float(result.current_rows),
           "reference_rows": float(result.reference_rows)}
    if result.prediction is not None:
        out["prediction_drift_score"] = result.prediction.score
        out["prediction_drifted"] = float(result.prediction.drifted)
    for c in result.columns:
        out[f"drift_score.{_metric_key(c.column)}"] = c.score
    return out


def _metric_key(name: str) -> str:
    """A feature name as an MLflow metric key (letters, digits, _-./ and spaces only)."""
    return "".join(ch if ch.isalnum() or ch in "_-./ " else "_" for ch in name)


def describe(outcome: DriftOutcome) -> list[str]:
    """The lines `monitor drift` prints (its problems are printed apart, as warnings)."""
    r, m = outcome.result, outcome.model
    lines = [f"{m.name} v{m.version}: {r.current_rows:,} served rows {outcome.start:%Y-%m-%d %H:%M} - "
             f"{outcome.end:%Y-%m-%d %H:%M} UTC against {r.reference_rows:,} reference rows"]
    lines.append(f"drifted features: {len(r.drifted)} of {len(r.columns)} ({r.share:.0%}; dataset drift at "
                 f">= {r.drift_share_threshold:.0%}: {'yes' if r.dataset_drift else 'no'})")
    width = max([len(c.column) for c in r.columns] + [5])
    for c in sorted(r.columns, key=lambda c: (not c.drifted, c.column)):
        lines.append(f"  {c.column:<{width}}  {c.display_name:<30} {c.score:>9.4f}  threshold {c.threshold:g}"
                     f"  {'DRIFT' if c.drifted else 'ok'}")
    if r.prediction is not None:
        p = r.prediction
        lines.append(f"  {'score':<{width}}  {p.display_name:<30} {p.score:>9.4f}  threshold {p.threshold:g}"
                     f"  {'DRIFT' if p.drifted else 'ok'}  (prediction drift)")
    for name, why in r.skipped.items():
        lines.append(f"  {name:<{width}}  not compared: {why}")
    if outcome.html:
        lines.append(f"report: {outcome.html}")
    if outcome.mlflow_run_id:
        lines.append(f"MLflow run: {outcome.mlflow_run_id}")
    if outcome.evidently_project:
        lines.append(f"Evidently UI project: {outcome.evidently_project}")
    return lines

