"""A training frame straight from a CRM file and its spec, without servers (tests, benchmarks).

It parses the file with the same checks ingest uses (pipelines/validate.py), so the features are the ones
`leadscore ingest crm` would store; rejected rows are left out. It skips the feature store, so it is not
point-in-time: use it only for files whose rows all share one time (like the shared datasets) or for experiments.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipelines.spec import DatasetSpec
from pipelines.validate import check_chunk

OFFLINE_KEY = b"leadscore-offline-frame"  # pseudonymises hashed PII columns the same way on every call


def frame_from_file(path: str | Path, spec: DatasetSpec, nrows: int | None = None) -> pd.DataFrame:
    """lead_id, event_timestamp, label and the spec's features, one row per valid line of the CSV."""
    if spec.label is None:
        raise ValueError(f"spec {spec.name!r} has no label column: it cannot train a model")
    raw = pd.read_csv(path, dtype=str, keep_default_na=False, nrows=nrows)
    raw.index = pd.RangeIndex(1, len(raw) + 1)
    checked = check_chunk(raw, spec, 1, OFFLINE_KEY)
    frame = checked.features.copy()
    frame.insert(2, "label", checked.labels.astype("int64"))
    for name, kind in spec.feature_columns:  # the dtypes the offline store hands back
        if kind == "bool":
            frame[name] = frame[name].astype(object).where(frame[name].notna(), None)
        elif kind == "int":
            frame[name] = frame[name].astype("float64")
    return frame.reset_index(drop=True)
