"""A model version's reference: the rows it was trained and tested on (a uniform sample past a size), kept in
PostgreSQL keyed by lead (monitoring.reference_rows, reachable by erasure), and their summary logged with the run.

Every reference score is out of sample, as the served scores it is compared with are: a training row carries the
ensemble's cross-fitted score (its members' out-of-fold log-odds through the stacker and calibrator,
models/crossfit.py), a test row the registered model's score. In-sample scores of boosted trees are more extreme
than any served score, and would show prediction drift on the day a model is deployed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from infra.config import Settings

DEFAULT_ROWS = 200_000
MIN_LEVEL_COUNT = 10  # a category level rarer than this is summarised as "(other)": no small groups in MLflow


def reference_scores(result) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001 - models.fit.FitResult
    """(training rows' cross-fitted ensemble scores, test rows' scores), in the split's row order."""
    from models.ensemble import calibrate

    ens = result.ensemble
    z = ens.intercept + sum(ens.weights[m] * result.crossfits[m].oof_logit for m in ens.members)
    train = calibrate(np.asarray(z, "float64"), ens.calibration)
    if len(train) != len(result.split.train):
        raise ValueError(f"{len(train)} out-of-fold scores for {len(result.split.train)} training rows")
    test = result.test_scores["score"].to_numpy("float64") if len(result.split.test) else np.zeros(0)
    return train, test


def reference_frame(result, max_rows: int = DEFAULT_ROWS, seed: int = 0) -> pd.DataFrame:  # noqa: ANN001
    """part, lead_id, event_timestamp, label, score and the model's features; a uniform sample of `max_rows`."""
    train_scores, test_scores = reference_scores(result)
    parts = []
    for part, rows, scores in (("train", result.split.train, train_scores), ("test", result.split.test, test_scores)):
        if len(rows):
            frame = rows[["lead_id", "event_timestamp", "label", *result.schema.features]].copy()
            frame.insert(0, "part", part)
            frame.insert(4, "score", scores)
            parts.append(frame)
    frame = pd.concat(parts, ignore_index=True)
    if len(frame) > max_rows:
        frame = frame.sample(n=max_rows, random_state=seed).sort_index()
    return frame.reset_index(drop=True)


def save_reference(settings: Settings, model_name: str, run_id: str, frame: pd.DataFrame,
                   features: list[str]) -> int:
    """Replace the run's reference rows with `frame`'s; return how many were written."""
    import psycopg

    as_json = frame[features].to_json(orient="records", lines=True, date_format="iso", date_unit="s").splitlines()
    times = pd.to_datetime(frame["event_timestamp"], utc=True)
    columns = zip(frame["part"], frame["lead_id"].astype(str), times, frame["label"].astype("int64"),
                  frame["score"].astype("float64"), as_json, strict=True)
    names = "model_name, run_id, part, lead_id, event_timestamp, label, score, features"
    # training's login (infra/migrations/0022_train_role.sql); PostgreSQL refuses COPY into a table under
    # row-level security, so the rows are copied into a temporary table and moved with one INSERT ... SELECT
    with psycopg.connect(settings.pg_dsn(role="train")) as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM monitoring.reference_rows WHERE model_name = %s AND run_id = %s", (model_name, run_id))
        cur.execute(f"CREATE TEMP TABLE reference_in ON COMMIT DROP AS SELECT {names} FROM monitoring.reference_rows "
                    "WITH NO DATA")
        with cur.copy(f"COPY reference_in ({names}) FROM STDIN") as copy:
            for part, lead, at, label, score, features_json in columns:
                copy.write_row((model_name, run_id, part, lead, at.to_pydatetime(), int(label), float(score),
                                features_json))
        cur.execute(f"INSERT INTO monitoring.reference_rows ({names}) SELECT {names} FROM reference_in")
    return len(frame)


def summarize(frame: pd.DataFrame, schema) -> dict:  # noqa: ANN001 - models.preprocess.FeatureSchema
    """Aggregates only (no lead's row): per feature its type, missing share and distribution; the score's
    quantiles; rows and positive rate per part. Category levels seen fewer than MIN_LEVEL_COUNT times are pooled."""
    quantiles = [0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0]
    out: dict = {"rows": int(len(frame)), "parts": {}, "features": {}}
    for part, rows in frame.groupby("part"):
        out["parts"][str(part)] = {"rows": int(len(rows)), "positive_rate": float(rows["label"].mean())}
    for name in schema.features:
        col = frame[name]
        entry: dict = {"missing_share": float(col.isna().mean())}
        if name in schema.categorical:
            counts = col.dropna().astype(str).value_counts()
            kept = counts[counts >= MIN_LEVEL_COUNT]
            entry |= {"type": "categorical", "levels": {k: int(v) for k, v in kept.items()},
                      "other": int(counts.sum() - kept.sum())}
        else:
            if name in schema.dates:
                at = pd.to_datetime(frame["event_timestamp"], utc=True)
                values = (at - pd.to_datetime(col, utc=True)).dt.total_seconds() / 86400.0
                entry["type"], entry["unit"] = "date", "days before the row's event time"
            else:
                values = pd.to_numeric(col.astype("float64"), errors="coerce")
                entry["type"] = "numeric"
            values = values.dropna()
            if len(values):
                entry |= {"mean": float(values.mean()), "std": float(values.std(ddof=0)),
                          "quantiles": dict(zip(map(str, quantiles), map(float, values.quantile(quantiles)),
                                                strict=True))}
        out["features"][name] = entry
    out["score"] = {"mean": float(frame["score"].mean()),
                    "quantiles": dict(zip(map(str, quantiles), map(float, frame["score"].quantile(quantiles)),
                                          strict=True))}
    return out


def record_reference(settings: Settings, model_name: str, run_id: str, result,  # noqa: ANN001 - FitResult
                     max_rows: int | None = None) -> dict:
    """Write the version's reference rows and return their summary (what train logs to MLflow)."""
    max_rows = max_rows or int(settings.env.get("LEADSCORE_REFERENCE_ROWS", DEFAULT_ROWS))
    frame = reference_frame(result, max_rows)
    written = save_reference(settings, model_name, run_id, frame, list(result.schema.features))
    summary = summarize(frame, result.schema)
    summary["stored"] = {"table": "monitoring.reference_rows", "rows": written, "sampled_from":
                         int(len(result.split.train) + len(result.split.test))}
    return summary
