"""What the monitor compares: the champion version (from the MLflow registry), its reference rows and the features
served in a time window, read from PostgreSQL as typed columns.

The served features come from `serving.prediction_log.features` (the row each score was computed from, logged by
the scoring service) and the reference from `monitoring.reference_rows`. Both are turned into model inputs inside
PostgreSQL (numbers and booleans as float8, categories as text, dates as days before the scoring or event time,
as the models read them) and streamed out with one COPY as CSV, parsed by Arrow: no JSON is decoded in Python.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from infra.config import Settings

if TYPE_CHECKING:
    import pandas as pd

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


TEST_METRICS = ("roc_auc", "pr_auc", "log_loss", "brier", "ece", "precision_at_10")


class MonitorError(RuntimeError):
    """A monitor run that cannot go on, with what to do next (printed as one line)."""


def parse_duration(text: str, what: str = "--window") -> timedelta:
    """'30m', '12h', '1d', '7d', '2w' as a timedelta."""
    match = _DURATION.match(text or "")
    if not match or float(match.group(1)) <= 0:
        raise MonitorError(f"{what} {text!r} is not a duration: use a number and s, m, h, d or w (e.g. 1d, 7d, 12h)")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def parse_time(text: str, what: str) -> datetime:
    """An ISO 8601 date or time (UTC when it names no zone)."""
    import pandas as pd

    try:
        stamp = pd.Timestamp(text)
    except ValueError:
        raise MonitorError(f"{what} {text!r} is not an ISO 8601 date or time (e.g. 2026-12-01 or "
                           "2026-12-01T06:00:00Z)") from None
    return (stamp.tz_localize(UTC) if stamp.tzinfo is None else stamp.tz_convert(UTC)).to_pydatetime()


def window(span: str = "1d", since: str | None = None, until: str | None = None,
           now: datetime | None = None) -> tuple[datetime, datetime]:
    """[start, end) from --window/--since/--until: the end defaults to now, the start to end - window."""
    end = parse_time(until, "--until") if until else (now or datetime.now(UTC))
    start = parse_time(since, "--since") if since else end - parse_duration(span)
    if start >= end:
        raise MonitorError(f"the window is empty: --since {start:%Y-%m-%d %H:%M} is not before --until "
                           f"{end:%Y-%m-%d %H:%M}")
    return start, end


@dataclass
class ModelRef:
    """A registered version and what the monitor needs of it."""

    name: str
    version: str
    run_id: str
    feature_service: str
    created: datetime
    kinds: dict[str, str]  # feature -> numeric | categorical | date (from the run's reference summary)
    test_metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def features(self) -> list[str]:
        return list(self.kinds)


def _reference_summary(client, run_id: str) -> dict | None:  # noqa: ANN001 - MlflowClient
    import json
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(run_id, "monitoring/reference_summary.json", tmp)
        except Exception:  # noqa: BLE001 - absent: a version trained before monitoring existed
            return None
        with open(path) as fh:
            return json.load(fh)


def model_ref(settings: Settings, name: str, alias: str = "champion", version: str | None = None) -> ModelRef:
    """The version behind `alias` (or `version`), with its reference's feature types and test metrics."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from models.train import configure_mlflow

    configure_mlflow(settings)
    client = MlflowClient()
    try:
        found = client.get_model_version(name, version) if version else client.get_model_version_by_alias(name, alias)
    except MlflowException:
        known = [m.name for m in client.search_registered_models(max_results=50)]
        if name not in known:
            raise MonitorError(f"no registered model {name!r} (registered: {', '.join(known) or 'none'}): pass "
                               "--model NAME or train one with `leadscore train`") from None
        raise MonitorError(f"model {name!r} has no {'version ' + version if version else '@' + alias}: promote a "
                           f"version with `leadscore promote --model {name}` or in the MLflow UI") from None
    run_id = found.tags.get("run_id") or found.run_id
    summary = _reference_summary(client, run_id)
    if summary is None:
        raise MonitorError(f"{name} version {found.version} has no monitoring reference (it was trained before "
                           "monitoring existed, or with reference=False): retrain it with `leadscore train`")
    kinds = {f: entry["type"] for f, entry in summary["features"].items()}
    metrics = client.get_run(run_id).data.metrics
    test = {key: metrics[f"test_{key}"] for key in TEST_METRICS if f"test_{key}" in metrics}  # the ensemble's
    for key in ("roc_auc", "log_loss"):
        if key not in test and f"test_{key}" in found.tags:
            test[key] = float(found.tags[f"test_{key}"])
    created = datetime.fromtimestamp(found.creation_timestamp / 1000, UTC)
    return ModelRef(name, str(found.version), run_id, found.tags.get("feature_service", ""), created, kinds, test,
                    dict(found.tags))


def _expr(source: str, name: str, kind: str, at: str) -> str:
    """SQL turning one jsonb feature into the model's input: float8 for numbers, booleans and dates, text else."""
    key = "'" + name.replace("'", "''") + "'"
    value = f"{source}->{key}"
    if kind == "categorical":
        return f"{source}->>{key}"
    if kind == "date":
        return (f"CASE jsonb_typeof({value}) WHEN 'number' THEN (extract(epoch FROM {at}) - ({source}->>{key})::float8)"
                f" / 86400 WHEN 'string' THEN CASE WHEN pg_input_is_valid({source}->>{key}, 'timestamptz') THEN "
                f"extract(epoch FROM {at} - ({source}->>{key})::timestamptz)::float8 / 86400 END END")
    return (f"CASE jsonb_typeof({value}) WHEN 'number' THEN ({source}->>{key})::float8 WHEN 'boolean' THEN "
            f"(({source}->>{key})::boolean)::int::float8 END")


def _copy_frame(settings: Settings, query: str, params: tuple, ref: ModelRef, extra: list[str]) -> pd.DataFrame:
    """Run COPY (query) TO STDOUT as CSV and parse it with Arrow into model-input columns."""
    import psycopg
    import pyarrow as pa
    from psycopg import sql as psql
    from pyarrow import csv

    names = [*extra, *ref.features]
    aliases = [f"c{i}" for i in range(len(names))]
    buf = io.BytesIO()
    with psycopg.connect(settings.pg_dsn(role="monitor")) as conn, conn.cursor() as cur:
        select = psql.SQL(query).format(*[psql.Literal(p) for p in params])
        with cur.copy(psql.SQL("COPY ({}) TO STDOUT WITH (FORMAT csv, HEADER)").format(select)) as copy:
            for chunk in copy:
                buf.write(chunk)
    types = {a: (pa.dictionary(pa.int32(), pa.string()) if ref.kinds.get(n) == "categorical" else pa.float64())
             for a, n in zip(aliases, names, strict=True) if n not in ("at",)}
    types["c0"] = pa.timestamp("us", tz="UTC")
    buf.seek(0)
    table = csv.read_csv(buf, convert_options=csv.ConvertOptions(
        column_types=types, strings_can_be_null=True, quoted_strings_can_be_null=False))
    frame = table.to_pandas()
    frame.columns = names
    return frame


def _selects(ref: ModelRef, source: str, at: str) -> str:
    """The select list; braces doubled, as the query is then a psycopg.sql template."""
    exprs = ", ".join([f"{at}", "score"] + [_expr(source, f, k, at) for f, k in ref.kinds.items()])
    return exprs.replace("{", "{{").replace("}", "}}")


def load_served(settings: Settings, ref: ModelRef, start: datetime, end: datetime) -> pd.DataFrame:
    """at, score and the features of every logged score of the version in [start, end)."""
    query = (f"SELECT {_selects(ref, 'features', 'at')} FROM serving.prediction_log WHERE model_name = {{}} AND "
             "model_version = {} AND at >= {} AND at < {} AND features IS NOT NULL")
    return _copy_frame(settings, query, (ref.name, ref.version, start, end), ref, ["at", "score"])


def count_scored(settings: Settings, ref: ModelRef, start: datetime, end: datetime) -> tuple[int, int]:
    """(scores of the version in the window, how many of them logged their features)."""
    import psycopg

    with psycopg.connect(settings.pg_dsn(role="monitor")) as conn:
        row = conn.execute("SELECT count(*), count(features) FROM serving.prediction_log WHERE model_name = %s "
                           "AND model_version = %s AND at >= %s AND at < %s",
                           (ref.name, ref.version, start, end)).fetchone()
    return int(row[0]), int(row[1])


def load_reference(settings: Settings, ref: ModelRef) -> pd.DataFrame:
    """event time, score and the features of the version's reference rows."""
    query = (f"SELECT {_selects(ref, 'features', 'event_timestamp')} FROM monitoring.reference_rows WHERE "
             "model_name = {} AND run_id = {}")
    frame = _copy_frame(settings, query, (ref.name, ref.run_id), ref, ["at", "score"])
    if frame.empty:
        raise MonitorError(f"{ref.name} version {ref.version}'s reference rows are gone from "
                           "monitoring.reference_rows (erased or deleted): retrain the model to record a new one")
    return frame
