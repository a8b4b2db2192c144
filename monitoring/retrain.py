"""The loop's retrain and promotion gate (monitoring/loop.py decides when).

The gate is out of time: its rows are the leads of the champion's newest matured cohort, each with the features it
was scored with (from the prediction log) and its outcome as known now. The challenger is trained without any of
those leads, so both versions are judged on leads neither was fitted on after they were scored. It passes when
the challenger's ROC AUC is at least the champion's, its log loss and calibration error at most the champion's,
and its top-decile precision at most `precision_tolerance` lower.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from infra.config import Settings
from monitoring.windows import ModelRef, MonitorError

MIN_TRAIN_ROWS = 200
GATE_KEYS = ("roc_auc", "log_loss", "ece", "precision_at_10", "pr_auc", "brier")


def gate_rows(settings: Settings, ref: ModelRef, perf) -> pd.DataFrame | None:  # noqa: ANN001 - PerformanceOutcome
    """lead_id, the logged features, score and outcome of the newest matured cohort's leads (None if none)."""
    import psycopg

    from monitoring.performance import outcomes

    if perf is None or not perf.matured:
        return None
    week = pd.Timestamp(perf.matured[-1].cohort, tz="UTC")
    start, end = max(week, pd.Timestamp(perf.start)), min(week + pd.Timedelta(days=7), pd.Timestamp(perf.end))
    dataset = ref.tags.get("dataset")
    with psycopg.connect(settings.pg_dsn(role="monitor")) as conn:
        rows = conn.execute("""
            WITH first AS (
                SELECT DISTINCT ON (lead_id) lead_id, at, score, features FROM serving.prediction_log
                WHERE model_name = %s AND model_version = %s AND at >= %s AND at < %s ORDER BY lead_id, at)
            SELECT f.lead_id, f.at, f.score, f.features, l.label, l.event_timestamp FROM first f
            LEFT JOIN LATERAL (SELECT label, event_timestamp FROM offline.labels WHERE lead_id = f.lead_id
                               AND (%s::text IS NULL OR dataset = %s) ORDER BY event_timestamp DESC LIMIT 1) l ON true
            WHERE f.features IS NOT NULL""",
            (ref.name, ref.version, start.to_pydatetime(), end.to_pydatetime(), dataset, dataset)).fetchall()
    frame = pd.DataFrame(rows, columns=["lead_id", "scored_at", "score", "features", "label", "label_at"])
    if frame.empty:
        return None
    frame["scored_at"] = pd.to_datetime(frame["scored_at"], utc=True)
    frame["label"] = pd.to_numeric(frame["label"]).astype("float64")
    frame["outcome"] = outcomes(frame, perf.end, perf.maturity)
    return frame[frame["outcome"].notna()].reset_index(drop=True)


def training_frame(settings: Settings, ref: ModelRef, exclude: set[str]) -> pd.DataFrame:
    """The feature service's point-in-time set as of now: each lead's latest label, consent still granted, none
    of `exclude`, only the tenants the champion learned from (its `tenants` tag)."""
    import psycopg

    from pipelines.training_data import build_training_set

    frame = build_training_set(settings, ref.feature_service, ref.tags.get("dataset"))
    frame = frame.sort_values("event_timestamp").drop_duplicates("lead_id", keep="last")
    if ref.tags.get("tenants"):  # the tenants the champion learned from, and no other (compliance/tenants.py)
        from compliance.tenants import tenants_of

        frame = frame[tenants_of(frame["lead_id"]).isin(ref.tags["tenants"].split(",")).to_numpy()]
    with psycopg.connect(settings.pg_dsn(role="monitor")) as conn:
        allowed = {r[0] for r in conn.execute(
            "SELECT lead_id FROM compliance.consent WHERE purpose = 'scoring' AND granted AND "
            "(expires_at IS NULL OR expires_at > now())")}
    frame = frame[frame["lead_id"].isin(allowed) & ~frame["lead_id"].isin(exclude)]
    if len(frame) < MIN_TRAIN_ROWS or frame["label"].nunique() < 2:
        raise MonitorError(f"only {len(frame)} rows with consent outside the gate cohort (both outcomes needed, "
                           f"at least {MIN_TRAIN_ROWS}): no challenger trained")
    return frame.reset_index(drop=True)


def score_rows(model_name: str, version: str, rows: pd.DataFrame) -> np.ndarray:
    """A version's scores of logged feature rows (the serving path: score_records on plain dicts)."""
    import mlflow

    scorer = mlflow.pyfunc.load_model(f"models:/{model_name}/{version}").unwrap_python_model()
    records = [{f: (feats or {}).get(f) for f in scorer.feature_names} for feats in rows["features"]]
    return np.asarray(scorer.score_records(records, method=None)["score"], "float64")


def gate(ref: ModelRef, challenger: str, rows: pd.DataFrame, precision_tolerance: float) -> dict:
    """Champion and challenger on the same out-of-time rows; `passed` and the reasons."""
    from models.evaluate import metrics

    y = rows["outcome"].to_numpy("int64")
    if len(np.unique(y)) < 2:
        return {"passed": False, "rows": len(rows), "reasons": ["the gate cohort has a single outcome"]}
    champ = metrics(y, score_rows(ref.name, ref.version, rows))
    chall = metrics(y, score_rows(ref.name, challenger, rows))
    checks = {"roc_auc": chall["roc_auc"] >= champ["roc_auc"], "log_loss": chall["log_loss"] <= champ["log_loss"],
              "ece": chall["ece"] <= champ["ece"],
              "precision_at_10": chall["precision_at_10"] >= champ["precision_at_10"] - precision_tolerance}
    reasons = [f"{k} {chall[k]:.4f} vs champion {champ[k]:.4f}: {'ok' if ok else 'worse'}" for k, ok in checks.items()]
    return {"passed": all(checks.values()), "rows": len(rows), "positives": int(y.sum()), "checks": checks,
            "challenger": {k: chall[k] for k in GATE_KEYS}, "champion": {k: champ[k] for k in GATE_KEYS},
            "reasons": reasons}


def retrain_and_gate(settings: Settings, ref: ModelRef, perf, options, decision,  # noqa: ANN001
                     say: Callable[[str], None] = print, frame: pd.DataFrame | None = None) -> None:
    """Train a challenger, gate it, promote it if allowed; fill in `decision` (a monitoring.loop.Decision)."""
    from mlflow import MlflowClient

    from models.fit import FitOptions
    from models.train import train_frame

    rows = gate_rows(settings, ref, perf)
    exclude = set(rows["lead_id"]) if rows is not None else set()
    frame = training_frame(settings, ref, exclude) if frame is None else frame
    say(f"retraining {ref.name} on {len(frame)} rows ({int(frame['label'].sum())} positive); gate: "
        f"{len(rows) if rows is not None else 0} out-of-time leads")
    trained = train_frame(settings, frame, ref.feature_service,
                          FitOptions(trials=options.trials, max_epochs=options.max_epochs, progress=False),
                          ref.tags.get("dataset"), ref.name, say=lambda _: None)
    decision.challenger = str(trained.version)
    client = MlflowClient()
    if rows is None or rows.empty:
        decision.action = "kept"
        decision.reasons.append("no matured out-of-time cohort to gate on: the challenger awaits approval")
    else:
        decision.gate = gate(ref, decision.challenger, rows, options.precision_tolerance)
        passed = decision.gate["passed"]
        decision.action = "promoted" if passed and options.auto_promote else "kept"
        decision.reasons.append(("gate passed" if passed else "gate failed") + ": " +
                                ", ".join(decision.gate["reasons"]))
        if passed and not options.auto_promote:
            decision.reasons.append("promotion needs --auto-promote or a person in the MLflow UI")
    status = "promoted by the monitor" if decision.action == "promoted" else "awaiting approval"
    for key, value in {"monitor.status": status, "monitor.gate": "; ".join(decision.gate["reasons"])
                       if decision.gate else "not gated", "monitor.compared_with": ref.version}.items():
        client.set_model_version_tag(ref.name, decision.challenger, key, value[:4000])
    if decision.action == "promoted":
        client.set_registered_model_alias(ref.name, "champion", decision.challenger)
        client.set_model_version_tag(ref.name, ref.version, "promotion.replaced_by", decision.challenger)


def parse_sustain(text: str) -> tuple[int, int]:
    """'2/3' -> (2, 3)."""
    try:
        n, m = (int(x) for x in text.split("/"))
    except ValueError:
        raise MonitorError(f"--sustain {text!r} is not N/M (e.g. 2/3: drift in 2 of the last 3 windows)") from None
    if not 1 <= n <= m:
        raise MonitorError(f"--sustain {text!r}: N must be between 1 and M")
    return n, m

