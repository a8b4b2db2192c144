"""A training frame straight from a CRM file and its spec, without servers (tests, benchmarks).

It reads the file with ingest's reader (pipelines/csv_read.py: the spec's `csv:` block, the rest detected) and parses
it with the same checks (pipelines/validate.py), so the features are the ones `leadscore ingest crm` would store;
rejected rows are left out. Hashed PII and generated `row_hash` ids use a fixed key of their own here, so they are
stable between calls but differ from the ingested ones. It skips the feature store, so it is not
point-in-time: use it only for files whose rows all share one time (like the shared datasets) or for experiments.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipelines.csv_read import read_table
from pipelines.file_checks import label_matches, open_checked
from pipelines.spec import DatasetSpec
from pipelines.validate import check_chunk

OFFLINE_KEY = b"leadscore-offline-frame"  # pseudonymises hashed PII columns the same way on every call


def frame_from_file(path: str | Path, spec: DatasetSpec, nrows: int | None = None) -> pd.DataFrame:
    """lead_id, event_timestamp, label and the spec's features, one row per valid line of the file."""
    if spec.label is None:
        raise ValueError(f"spec {spec.name!r} has no label column: it cannot train a model")
    path = Path(path)
    dialect, _ = open_checked(path, spec)
    raw, _ = read_table(path, nrows=nrows, dialect=dialect)
    raw.index = pd.RangeIndex(1, len(raw) + 1)
    checked = check_chunk(raw, spec, 1, OFFLINE_KEY, dialect=dialect, label_values=label_matches(spec, path))
    frame = checked.features.copy()
    frame.insert(2, "label", checked.labels.astype("int64"))
    for name, kind in spec.feature_columns:  # the dtypes the offline store hands back
        if kind == "bool":
            frame[name] = frame[name].astype(object).where(frame[name].notna(), None)
        elif kind == "int":
            frame[name] = frame[name].astype("float64")
    return frame.reset_index(drop=True)
