"""The retraining loop: one cycle (`leadscore monitor run`) or one per period (`leadscore monitor watch`).

A cycle measures drift over the last window and realized quality on matured cohorts, then decides:
- *no_action*: drift is not sustained (fewer than N of the last M drift windows drifted), the newest matured
  cohort's ROC AUC is not down by `auc_drop` (relative) against the champion's own test ROC AUC, and its top-decile
  precision is not down by `precision_drop` (relative) beyond noise: the leads a broker calls first can stop
  converting while the ranking as a whole holds up (a cohort's 95 % upper bound must be below the floor);
- *cooldown*: a retrain is called for, but the last one is more recent than the cooldown;
- *retrained*: a challenger is trained on a fresh point-in-time set (each lead's latest label as known now, only
  leads whose scoring consent still stands, none of the gate's leads) and registered as `@challenger`; the gate
  compares it with the champion on the out-of-time gate cohort (the newest matured cohort's leads, with the
  features they were scored with and their outcomes);
- *promoted* (with `auto_promote` and a passed gate) or *kept* (`@challenger` tagged "awaiting approval").
Every decision is a `monitoring.results` row, a `compliance.audit_log` row, MLflow version tags and a Prometheus
counter, each with the figures behind it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from infra.config import Settings
from monitoring.windows import ModelRef, MonitorError, model_ref


@dataclass
class LoopOptions:
    window: timedelta = timedelta(days=1)  # drift window, ending at the cycle's time
    performance_window: timedelta = timedelta(weeks=8)  # scores whose cohorts are checked for realized quality
    maturity: timedelta | None = None  # None: the p90 of the observed label lag
    sustain: tuple[int, int] = (2, 3)  # retrain on drift in N of the last M windows
    auc_drop: float = 0.05  # relative drop of a matured cohort's ROC AUC that calls for a retrain
    precision_drop: float = 0.2  # relative drop of its top-decile precision (upper 95 % bound) that calls for one
    cooldown: timedelta = timedelta(hours=24)
    auto_promote: bool = False
    precision_tolerance: float = 0.02  # top-decile precision may be this much lower
    trials: int = 0  # tuning trials per member for the challenger (0: default parameters)
    max_epochs: int = 20
    max_erasure_debt: int | None = 1000  # retrain once the champion learned from more erased leads than this


@dataclass
class Decision:
    model: str
    version: str
    action: str  # no_action | cooldown | retrained | promoted | kept | failed
    reasons: list[str] = field(default_factory=list)
    figures: dict = field(default_factory=dict)
    challenger: str | None = None
    gate: dict | None = None

    def line(self) -> str:
        who = f"{self.model} v{self.version}"
        tail = f" (challenger v{self.challenger})" if self.challenger else ""
        return f"decision for {who}: {self.action}{tail}: {'; '.join(self.reasons) or 'nothing to act on'}"


def sustained_drift(settings: Settings, ref: ModelRef, sustain: tuple[int, int]) -> tuple[bool, str]:
    """Whether N of the version's last M drift windows drifted, and the count as words."""
    import psycopg

    n, m = sustain
    with psycopg.connect(settings.pg_dsn(role="monitor")) as conn:
        flags = [r[0] for r in conn.execute(
            "SELECT drifted FROM monitoring.results WHERE model_name = %s AND model_version = %s AND kind = 'drift' "
            "ORDER BY at DESC LIMIT %s", (ref.name, ref.version, m))]
    hits = sum(bool(f) for f in flags)
    return hits >= n, f"drift in {hits} of the last {len(flags)} windows (retrain at {n} of {m})"


def last_retrain(settings: Settings, ref: ModelRef) -> datetime | None:
    import psycopg

    with psycopg.connect(settings.pg_dsn(role="monitor")) as conn:
        row = conn.execute("SELECT max(at) FROM monitoring.results WHERE model_name = %s AND kind = 'decision' AND "
                           "summary->>'action' IN ('retrained', 'promoted', 'kept')", (ref.name,)).fetchone()
    return row[0] if row else None


def cycle(settings: Settings, model_name: str, options: LoopOptions, now: datetime | None = None,
          say: Callable[[str], None] = print) -> Decision:
    """One monitor cycle: drift, realized quality, the decision and (when called for) retrain and gate."""
    from monitoring.drift import describe as drift_lines
    from monitoring.drift import run_drift
    from monitoring.performance import describe as perf_lines
    from monitoring.performance import run_performance

    now = now or datetime.now(UTC)
    ref = model_ref(settings, model_name)
    decision = Decision(ref.name, ref.version, "no_action")
    drift = None
    try:
        drift = run_drift(settings, ref.name, now - options.window, now, ref=ref)
        for line in drift_lines(drift)[:2]:
            say(line)
        if (p := drift.result.prediction) is not None:
            say(f"score drift: {p.display_name} {p.score:.4f} (threshold {p.threshold:g}): "
                f"{'DRIFT' if p.drifted else 'ok'}")
        decision.figures["drift_share"] = drift.result.share
        decision.figures["drifted_features"] = [c.column for c in drift.result.drifted]
    except MonitorError as exc:
        say(f"drift: {exc}")
        decision.figures["drift"] = str(exc)
    perf = None
    try:
        perf = run_performance(settings, ref.name, now - options.performance_window, now, options.maturity, now,
                               ref=ref)
        for line in perf_lines(perf):
            say(line)
    except MonitorError as exc:
        say(f"performance: {exc}")
        decision.figures["performance"] = str(exc)
    drifting, words = sustained_drift(settings, ref, options.sustain)
    decision.figures["sustained"] = words
    if drifting and drift is None:  # never retrain on missing data: the window at hand must show the drift
        decision.figures["sustained"] += " (not acted on: no served rows in this window)"
    elif drifting:
        decision.reasons.append(words)
    test_auc = ref.test_metrics.get("roc_auc")
    if perf is not None and perf.matured and test_auc:
        latest = perf.matured[-1]
        drop = 1.0 - latest.metrics["roc_auc"] / test_auc
        decision.figures |= {"realized_roc_auc": latest.metrics["roc_auc"], "test_roc_auc": test_auc,
                             "auc_drop": drop, "cohort": latest.cohort}
        if drop >= options.auc_drop:
            decision.reasons.append(f"cohort {latest.cohort}: realized ROC AUC {latest.metrics['roc_auc']:.4f} is "
                                    f"{drop:.1%} below the test ROC AUC {test_auc:.4f}")
    test_top = ref.test_metrics.get("precision_at_10")
    if perf is not None and perf.matured and test_top:
        _precision_check(perf.matured[-1], test_top, options.precision_drop, decision)
    if options.max_erasure_debt is not None:
        import psycopg

        from monitoring.metrics import erasure_debt

        with psycopg.connect(settings.pg_dsn(role="monitor")) as conn:
            debt = decision.figures["erasure_debt"] = erasure_debt(conn, ref.run_id)
        if debt > options.max_erasure_debt:
            decision.reasons.append(f"the champion learned from {debt} erased leads (over {options.max_erasure_debt})")
    if decision.reasons:
        since = last_retrain(settings, ref)
        if since is not None and now - since < options.cooldown:
            decision.action = "cooldown"
            decision.reasons.append(f"last retrain at {since:%Y-%m-%d %H:%M} UTC, cooldown {options.cooldown}")
        else:
            from monitoring.retrain import retrain_and_gate

            retrain_and_gate(settings, ref, perf, options, decision, say)
    record_decision(settings, ref, decision, now)
    return decision


def _precision_check(latest, test_top: float, drop: float, decision: Decision) -> None:  # noqa: ANN001 - Cohort
    """Call for a retrain when even the upper bound of the cohort's top-decile precision is below the floor."""
    realized, upper = latest.metrics["precision_at_10"], latest.metrics.get("precision_at_10_upper")
    floor = (1.0 - drop) * test_top
    decision.figures |= {"realized_precision_at_10": realized, "precision_at_10_upper": upper,
                         "test_precision_at_10": test_top, "precision_floor": floor}
    if upper is not None and upper < floor:
        decision.reasons.append(
            f"cohort {latest.cohort}: top-decile precision {realized:.3f} (95 % upper bound {upper:.3f} over "
            f"{latest.metrics['top_decile_leads']:.0f} leads) is below {1 - drop:.0%} of the test {test_top:.3f}")


def record_decision(settings: Settings, ref: ModelRef, decision: Decision, now: datetime) -> None:
    """The decision in monitoring.results, the audit log, MLflow tags and the Prometheus counter."""
    import psycopg
    from mlflow import MlflowClient

    from monitoring.metrics import DECISIONS

    summary = {"action": decision.action, "reasons": decision.reasons, "figures": decision.figures,
               "challenger": decision.challenger, "gate": decision.gate}
    text = json.dumps(summary, default=str)
    with psycopg.connect(settings.pg_dsn(role="monitor")) as conn:
        conn.execute("INSERT INTO monitoring.results (kind, model_name, model_version, window_start, window_end, "
                     "drifted, summary) VALUES ('decision', %s, %s, %s, %s, %s, %s)",
                     (ref.name, ref.version, now, now, None, text))
        conn.execute("INSERT INTO compliance.audit_log (actor, action, detail) VALUES ('monitor', 'monitor_decision', "
                     "%s)", (json.dumps({"model": ref.name, "version": ref.version, **summary}, default=str),))
    DECISIONS.labels(ref.name, decision.action).inc()
    client = MlflowClient()
    tags = {"monitor.decision": decision.action, "monitor.decided_at": f"{now:%Y-%m-%dT%H:%M:%SZ}",
            "monitor.reasons": "; ".join(decision.reasons)[:4000] or "none",
            "monitor.figures": json.dumps(decision.figures, default=str)[:4000]}
    for key, value in tags.items():
        client.set_model_version_tag(ref.name, ref.version, key, value)


def watch(settings: Settings, model_name: str, options: LoopOptions, every: timedelta, cycles: int | None = None,
          say: Callable[[str], None] = print, stop=None) -> int:  # noqa: ANN001 - threading.Event
    """Run a cycle every `every` (the first at once) until stopped; a failed cycle is reported and the loop goes
    on. Returns the number of failed cycles."""
    from monitoring.metrics import CYCLES

    failed, done = 0, 0
    while cycles is None or done < cycles:
        started = time.monotonic()
        try:
            decision = cycle(settings, model_name, options, say=say)
            say(decision.line())
            CYCLES.labels("ok").inc()
        except Exception as exc:  # noqa: BLE001 - a failed cycle must not end the loop
            failed += 1
            CYCLES.labels("failed").inc()
            say(f"cycle failed: {type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}")
        done += 1
        if cycles is not None and done >= cycles:
            break
        wait = max(0.0, every.total_seconds() - (time.monotonic() - started))
        if stop is not None:
            if stop.wait(wait):
                break
        else:
            time.sleep(wait)
    return failed
