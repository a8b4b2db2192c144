"""`leadscore monitor performance`: the champion's realized quality on matured cohorts of the leads it scored.

Each lead counts once, in the cohort (UTC week, starting Monday) of the first score the version gave it, with that
score. Its outcome is its latest label in the model's dataset (`offline.labels`: CRM `converted`/`lost` events of
the stream workers, or label ingests). Conversions arrive late, so an unlabelled lead is *pending*, not negative,
until it is older than the maturity window; past it, no conversion means a negative. The window is the 90th
percentile of the observed label lag (label time minus score time, of labels that came after a score) unless given
(`--maturity 30d`). A cohort is matured when its last lead is; its metrics are computed only then, on every lead.
Beside top-decile precision each cohort carries how many leads its top decile holds and the one-sided 95 % Wilson
upper bound of that precision, so that a drop is acted on only when it is beyond the noise of a small decile.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from infra.config import Settings
from monitoring.windows import ModelRef, MonitorError, model_ref

LAG_QUANTILE = 0.9
DEFAULT_MATURITY = timedelta(days=30)  # when no label has yet come after a score
MIN_COHORT = 20  # fewer resolved leads (or a single class): no metrics for the cohort
Z_95 = 1.6449  # one-sided 95 %


def wilson_upper(hits: float, n: int, z: float = Z_95) -> float:
    """One-sided upper confidence bound of a proportion `hits / n` (Wilson score interval)."""
    if n <= 0:
        return 1.0
    p = hits / n
    centre = p + z * z / (2 * n)
    spread = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return float(min(1.0, (centre + spread) / (1 + z * z / n)))


def load_scored(settings: Settings, ref: ModelRef, start: datetime, end: datetime) -> pd.DataFrame:
    """scored_at, score, label (NaN: none yet) and label_at of each lead's first score by the version."""
    import psycopg

    dataset = ref.tags.get("dataset")
    query = """
        WITH first AS (
            SELECT DISTINCT ON (lead_id) lead_id, at, score FROM serving.prediction_log
            WHERE model_name = %s AND model_version = %s AND at >= %s AND at < %s ORDER BY lead_id, at)
        SELECT f.at, f.score, l.label, l.event_timestamp FROM first f LEFT JOIN LATERAL (
            SELECT label, event_timestamp FROM offline.labels
            WHERE lead_id = f.lead_id AND (%s::text IS NULL OR dataset = %s) ORDER BY event_timestamp DESC LIMIT 1
        ) l ON true"""
    with psycopg.connect(settings.pg_dsn(role="monitor")) as conn:
        rows = conn.execute(query, (ref.name, ref.version, start, end, dataset, dataset)).fetchall()
    frame = pd.DataFrame(rows, columns=["scored_at", "score", "label", "label_at"])
    frame["scored_at"] = pd.to_datetime(frame["scored_at"], utc=True)
    frame["label_at"] = pd.to_datetime(frame["label_at"], utc=True)
    frame["label"] = pd.to_numeric(frame["label"]).astype("float64")
    frame["score"] = frame["score"].astype("float64")
    return frame


def maturity_window(frame: pd.DataFrame, given: timedelta | None = None) -> tuple[timedelta, str]:
    """The maturity window and where it came from."""
    if given is not None:
        return given, "given"
    lag = (frame["label_at"] - frame["scored_at"]).dt.total_seconds()
    lag = lag[frame["label"].eq(1) & (lag > 0)]
    if lag.empty:
        return DEFAULT_MATURITY, "default (no conversion has yet arrived after a score)"
    seconds = float(np.quantile(lag.to_numpy(), LAG_QUANTILE))
    return timedelta(seconds=seconds), f"p{int(LAG_QUANTILE * 100)} of {len(lag)} observed label lags"


def outcomes(frame: pd.DataFrame, now: datetime, maturity: timedelta) -> pd.Series:
    """1 converted, 0 lost or matured without a conversion, NaN pending (unlabelled and younger than maturity)."""
    matured = (pd.Timestamp(now) - frame["scored_at"]) >= pd.Timedelta(maturity)
    return frame["label"].where(frame["label"].notna(), np.where(matured, 0.0, np.nan))


@dataclass
class Cohort:
    cohort: str  # the week's Monday, YYYY-MM-DD
    leads: int
    labeled: int
    pending: int
    positives: int
    matured: bool
    metrics: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"cohort": self.cohort, "leads": self.leads, "labeled": self.labeled, "pending": self.pending,
                "positives": self.positives, "matured": self.matured,
                "label_coverage": self.labeled / self.leads if self.leads else 0.0, **self.metrics}


def cohorts(frame: pd.DataFrame, now: datetime, maturity: timedelta) -> list[Cohort]:
    """Per week of scoring: counts, and the metrics of a matured cohort with both outcomes."""
    from models.evaluate import metrics

    y = outcomes(frame, now, maturity)
    week = frame["scored_at"].dt.tz_convert(None).dt.to_period("W-SUN").dt.start_time.dt.strftime("%Y-%m-%d")
    out = []
    for name, idx in frame.groupby(week).groups.items():
        rows, labels = frame.loc[idx], y.loc[idx]
        matured = bool(labels.notna().all())
        c = Cohort(str(name), len(rows), int(rows["label"].notna().sum()), int(labels.isna().sum()),
                   int((labels == 1).sum()), matured)
        if matured and len(rows) >= MIN_COHORT and 0 < c.positives < len(rows):
            m = metrics(labels.to_numpy("int64"), rows["score"].to_numpy())
            c.metrics = {k: m[k] for k in ("roc_auc", "pr_auc", "log_loss", "brier", "ece", "precision_at_10")}
            top = max(1, int(round(len(rows) * 0.1)))  # as models.evaluate.top_share counts it
            c.metrics |= {"top_decile_leads": float(top),
                          "precision_at_10_upper": wilson_upper(round(m["precision_at_10"] * top), top)}
        out.append(c)
    return sorted(out, key=lambda c: c.cohort)


@dataclass
class PerformanceOutcome:
    model: ModelRef
    start: datetime
    end: datetime
    maturity: timedelta
    maturity_source: str
    cohorts: list[Cohort]
    html: object = None
    mlflow_run_id: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def matured(self) -> list[Cohort]:
        return [c for c in self.cohorts if c.metrics]

    def summary(self) -> dict:
        return {"maturity_s": self.maturity.total_seconds(), "maturity_source": self.maturity_source,
                "cohorts": [c.as_dict() for c in self.cohorts], "test": self.model.test_metrics}

    def figures(self) -> dict[str, float]:
        """MLflow metrics: the latest matured cohort's, and the drop against the test ROC AUC."""
        if not self.matured:
            return {"matured_cohorts": 0.0}
        last = self.matured[-1]
        out = {f"realized_{k}": v for k, v in last.metrics.items()} | {"matured_cohorts": float(len(self.matured))}
        if "roc_auc" in self.model.test_metrics:
            out["realized_auc_drop"] = 1.0 - last.metrics["roc_auc"] / self.model.test_metrics["roc_auc"]
        return out


def classification_snapshot(frame: pd.DataFrame, labels: pd.Series, timestamp: datetime, tags: list[str],
                            rows: int = 50_000):  # noqa: ANN201 - evidently Snapshot
    """Evidently's ClassificationPreset over the resolved leads (a sample past `rows`)."""
    from monitoring.publish import quiet_evidently

    quiet_evidently()
    from evidently import BinaryClassification, DataDefinition, Dataset, Report
    from evidently.presets import ClassificationPreset

    data = pd.DataFrame({"label": labels.astype("int64"), "score": frame["score"]}).dropna()
    if len(data) > rows:
        data = data.sample(n=rows, random_state=0)
    definition = DataDefinition(classification=[BinaryClassification(target="label", prediction_probas="score",
                                                                      pos_label=1)])
    return Report([ClassificationPreset()]).run(Dataset.from_pandas(data, data_definition=definition), None,
                                                timestamp=timestamp, tags=tags)


def run_performance(settings: Settings, model_name: str, start: datetime, end: datetime,
                    maturity: timedelta | None = None, now: datetime | None = None, publish: bool = True,
                    ref: ModelRef | None = None) -> PerformanceOutcome:
    """Realized quality of the champion on the leads it scored in [start, end)."""
    from monitoring.drift import report_dir
    from monitoring.publish import log_monitor_run, record_result, save_html, to_evidently_ui

    ref = ref or model_ref(settings, model_name)
    frame = load_scored(settings, ref, start, end)
    if frame.empty:
        raise MonitorError(f"{ref.name} v{ref.version} scored nothing between {start:%Y-%m-%d %H:%M} and "
                           f"{end:%Y-%m-%d %H:%M} UTC: widen --window or --since")
    now = now or end
    window_used, source = maturity_window(frame, maturity)
    outcome = PerformanceOutcome(ref, start, end, window_used, source, cohorts(frame, now, window_used))
    if not publish:
        return outcome
    labels = outcomes(frame, now, window_used)
    resolved = labels.notna()
    if resolved.sum() >= MIN_COHORT and labels[resolved].nunique() == 2:
        snap = classification_snapshot(frame[resolved], labels[resolved], end,
                                       [f"model:{ref.name}", f"version:{ref.version}", "performance"])
        outcome.html = save_html(snap, report_dir(settings, ref.name) /
                                 f"performance-v{ref.version}-{end:%Y%m%dT%H%M%S}.html")
        try:
            to_evidently_ui(settings, ref, snap)
        except Exception as exc:  # noqa: BLE001 - the figures stand
            outcome.problems.append(f"not sent to the Evidently UI: {str(exc).splitlines()[0][:200]}")
    record_result(settings, "performance", ref, start, end, len(frame), None, outcome.summary())
    try:
        outcome.mlflow_run_id = log_monitor_run(settings, ref, "performance", start, end, outcome.figures(),
                                                outcome.summary(), outcome.html)
    except Exception as exc:  # noqa: BLE001
        outcome.problems.append(f"not sent to MLflow: {str(exc).splitlines()[0][:200]}")
    return outcome


def describe(outcome: PerformanceOutcome) -> list[str]:
    m, test = outcome.model, outcome.model.test_metrics
    lines = [f"{m.name} v{m.version}: leads scored {outcome.start:%Y-%m-%d} - {outcome.end:%Y-%m-%d}; maturity "
             f"window {outcome.maturity.total_seconds() / 86400:.1f} days ({outcome.maturity_source})",
             f"  {'cohort':<10} {'leads':>7} {'labelled':>8} {'pending':>7} {'ROC AUC':>8} {'PR AUC':>7} "
             f"{'log loss':>8} {'ECE':>6} {'prec@10%':>8}"]
    for c in outcome.cohorts:
        k = c.metrics
        tail = (f"{k['roc_auc']:>8.4f} {k['pr_auc']:>7.4f} {k['log_loss']:>8.4f} {k['ece']:>6.3f} "
                f"{k['precision_at_10']:>8.3f}") if k else ("  not matured" if not c.matured else
                                                          "  too few resolved leads or one outcome only")
        lines.append(f"  {c.cohort:<10} {c.leads:>7} {c.labeled:>8} {c.pending:>7} {tail}")
    if test:
        lines.append(f"  {'test':<10} {'':>7} {'':>8} {'':>7} {test.get('roc_auc', np.nan):>8.4f} "
                     f"{test.get('pr_auc', np.nan):>7.4f} {test.get('log_loss', np.nan):>8.4f} "
                     f"{test.get('ece', np.nan):>6.3f} {test.get('precision_at_10', np.nan):>8.3f}  (the version's "
                     "held-out test rows)")
    if outcome.html:
        lines.append(f"report: {outcome.html}")
    if outcome.mlflow_run_id:
        lines.append(f"MLflow run: {outcome.mlflow_run_id}")
    return lines
