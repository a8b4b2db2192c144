"""The monitor's Prometheus gauges, read from `monitoring.results` (and the registry) at each scrape.

Served on `/metrics` by `leadscore monitor watch` (and `monitor metrics`), at the monitor port Prometheus scrapes
(`infra up` configures it). The gauges show the latest result of each kind for the champion of every watched
model, whichever process computed it (a one-shot `monitor drift` included), so an alert reflects the newest
figures; counters of cycles and decisions are the watching process's own. Labels carry model names, versions,
feature names, methods and cohort weeks: never a lead.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from prometheus_client import Counter

from infra.config import Settings

CYCLES = Counter("leadscore_monitor_cycles", "Monitor cycles run by this process, by outcome (ok, failed)", ["outcome"])
DECISIONS = Counter("leadscore_monitor_decisions", "Loop decisions (no_action, retrained, promoted, kept)",
                    ["model", "decision"])

# stream-fed feature views and the offline table their workers write (the PushSource views of feature_repo/)
STREAM_VIEWS = {"lead_engagement": "offline.lead_engagement"}
REGISTRY_TTL_S = 30.0


class MonitorCollector:
    """A prometheus_client collector over the monitor's results for `models`."""

    def __init__(self, settings: Settings, models: list[str]) -> None:
        self.settings, self.models = settings, models
        self._refs: dict[str, tuple[float, object]] = {}
        self._lock = threading.Lock()

    def _ref(self, name: str):  # noqa: ANN202 - monitoring.windows.ModelRef | None
        from monitoring.windows import MonitorError, model_ref

        with self._lock:
            at, ref = self._refs.get(name, (0.0, None))
            if time.monotonic() - at > REGISTRY_TTL_S:
                try:
                    ref = model_ref(self.settings, name)
                except MonitorError:
                    ref = None
                self._refs[name] = (time.monotonic(), ref)
            return ref

    def describe(self) -> list:
        return []  # prometheus_client would otherwise call collect() (the database) on registration

    def collect(self) -> Iterator[object]:
        import psycopg
        from prometheus_client.core import GaugeMetricFamily

        g = {name: GaugeMetricFamily(f"leadscore_monitor_{name}", doc, labels=labels) for name, doc, labels in (
            ("feature_drift_score", "Drift score of a served feature against the reference (Evidently's method)",
             ["model", "version", "feature", "method"]),
            ("feature_drifted", "1 when the feature's drift score passed its method's threshold",
             ["model", "version", "feature", "method"]),
            ("drift_share", "Share of the model's features that drifted in the latest window", ["model", "version"]),
            ("prediction_drift_score", "Drift score of the served scores", ["model", "version", "method"]),
            ("prediction_drifted", "1 when the served scores drifted", ["model", "version"]),
            ("drift_window_rows", "Served rows in the latest drift window", ["model", "version"]),
            ("realized_roc_auc", "ROC AUC of a matured cohort of scored leads", ["model", "version", "cohort"]),
            ("realized_precision_at_10", "Precision in the top decile of a matured cohort", ["model", "version",
                                                                                         "cohort"]),
            ("realized_precision_at_10_upper", "One-sided 95 % upper bound of that precision (Wilson)",
             ["model", "version", "cohort"]),
            ("label_coverage", "Share of a cohort's scored leads with a known outcome", ["model", "version", "cohort"]),
            ("test_roc_auc", "The version's own ROC AUC on its held-out test rows", ["model", "version"]),
            ("test_precision_at_10", "The version's own top-decile precision on its held-out test rows",
             ["model", "version"]),
            ("model_age_seconds", "Seconds since the version was registered", ["model", "version"]),
            ("last_result_timestamp_seconds", "When the latest result of a kind was recorded",
             ["model", "version", "kind"]),
            ("feature_freshness_seconds", "Seconds since a stream-fed view's latest row", ["view"]),
            ("erasure_debt_leads", "Erased leads the version learned from (compliance.lineage): retrain to drop them",
             ["model", "version"]))}
        with psycopg.connect(self.settings.pg_dsn(role="monitor"), connect_timeout=5) as conn:
            for name in self.models:
                ref = self._ref(name)
                if ref is None:
                    continue
                v = [ref.name, ref.version]
                g["model_age_seconds"].add_metric(v, time.time() - ref.created.timestamp())
                if "roc_auc" in ref.test_metrics:
                    g["test_roc_auc"].add_metric(v, ref.test_metrics["roc_auc"])
                if "precision_at_10" in ref.test_metrics:
                    g["test_precision_at_10"].add_metric(v, ref.test_metrics["precision_at_10"])
                g["erasure_debt_leads"].add_metric(v, erasure_debt(conn, ref.run_id))
                for kind, at, summary in conn.execute(
                        "SELECT DISTINCT ON (kind) kind, at, summary FROM monitoring.results WHERE model_name = %s "
                        "AND model_version = %s AND kind IN ('drift', 'performance') ORDER BY kind, at DESC",
                        (ref.name, ref.version)):
                    g["last_result_timestamp_seconds"].add_metric([*v, kind], at.timestamp())
                    if kind == "drift":
                        _drift(g, v, summary)
                    else:
                        for cohort in summary.get("cohorts", []):
                            if cohort.get("matured") and cohort.get("roc_auc") is not None:
                                g["realized_roc_auc"].add_metric([*v, cohort["cohort"]], cohort["roc_auc"])
                            for key in ("precision_at_10", "precision_at_10_upper"):
                                if cohort.get("matured") and cohort.get(key) is not None:
                                    g[f"realized_{key}"].add_metric([*v, cohort["cohort"]], cohort[key])
                            g["label_coverage"].add_metric([*v, cohort["cohort"]], cohort.get("label_coverage", 0.0))
            for view, table in STREAM_VIEWS.items():
                latest = conn.execute(f"SELECT extract(epoch FROM now() - max(event_timestamp)) FROM {table}"
                                      ).fetchone()
                if latest and latest[0] is not None:
                    g["feature_freshness_seconds"].add_metric([view], float(latest[0]))
        yield from g.values()


def erasure_debt(conn, run_id: str) -> int:  # noqa: ANN001 - psycopg connection
    """Erased leads the training run learned from."""
    return int(conn.execute("SELECT count(*) FROM compliance.lineage l JOIN compliance.erasure_list e USING "
                            "(lead_token) WHERE l.run_id = %s", (run_id,)).fetchone()[0])


def _drift(g: dict, labels: list[str], summary: dict) -> None:
    for feature, c in summary.get("features", {}).items():
        g["feature_drift_score"].add_metric([*labels, feature, c["method"]], c["score"])
        g["feature_drifted"].add_metric([*labels, feature, c["method"]], float(c["drifted"]))
    g["drift_share"].add_metric(labels, summary.get("drift_share", 0.0))
    g["drift_window_rows"].add_metric(labels, summary.get("current_rows", 0))
    prediction = summary.get("prediction")
    if prediction:
        g["prediction_drift_score"].add_metric([*labels, prediction["method"]], prediction["score"])
        g["prediction_drifted"].add_metric(labels, float(prediction["drifted"]))


def serve_metrics(settings: Settings, models: list[str], port: int | None = None):  # noqa: ANN201 - server
    """Start /metrics (the collector plus this process's counters) on the monitor port; returns the server."""
    from prometheus_client import REGISTRY, start_http_server

    REGISTRY.register(MonitorCollector(settings, models))
    server, _ = start_http_server(settings.monitor_port if port is None else port, addr=settings.host)
    return server
