"""Writing one checked chunk of a CRM export: features, labels, consent (and its ledger), rejects, in one transaction.

Rows go to PostgreSQL by COPY in CSV form, written by Arrow's CSV writer (pandas' `to_csv` is several times slower),
into a staging table and are upserted from there; a dataset whose table was empty when the run began skips the
staging table and the upsert: its rows are copied straight in (`Direct`), and the run falls back to upserts at the
first key that is already there (another ingest of the same dataset at the same time).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipelines.spec import DatasetSpec
from pipelines.validate import CheckedChunk


@dataclass
class Direct:
    """Whether this run copies rows straight into the tables (they held none of its keys when it began)."""

    features: bool = False
    labels: bool = False

    @classmethod
    def at_start(cls, conn, spec: DatasetSpec) -> Direct:  # noqa: ANN001
        """Direct writes where the dataset's table (and its labels) are empty at the start of the run."""
        empty = conn.execute(f"SELECT NOT EXISTS (SELECT 1 FROM {spec.table})").fetchone()[0]
        no_labels = conn.execute("SELECT NOT EXISTS (SELECT 1 FROM offline.labels WHERE dataset = %s)",
                                 (spec.name,)).fetchone()[0]
        return cls(features=bool(empty), labels=bool(empty and no_labels))


def csv_text(frame: pd.DataFrame) -> bytes | str:
    """The frame as CSV for COPY: missing values as unquoted empty fields (NULL), text always quoted (an empty
    string stays one). Arrow's writer where it takes the frame's types, pandas' otherwise."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    try:
        table = pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowException, TypeError, ValueError):  # mixed Python objects in a column: the slow, general way
        buf = io.StringIO()
        frame.to_csv(buf, index=False, header=False)
        return buf.getvalue()
    buf = io.BytesIO()
    pa_csv.write_csv(table, buf, pa_csv.WriteOptions(include_header=False))
    return buf.getvalue()


def copy_frame(conn, table: str, frame: pd.DataFrame) -> None:  # noqa: ANN001
    """COPY a frame into `table` (its columns by name)."""
    cols = ", ".join(f'"{c}"' for c in frame.columns)
    with conn.cursor().copy(f"COPY {table} ({cols}) FROM STDIN WITH (FORMAT csv)") as copy:
        copy.write(csv_text(frame))


def _straight_in(conn, table: str, frame: pd.DataFrame) -> bool:  # noqa: ANN001
    """COPY into `table` itself inside a savepoint; False (nothing written) if a key is already there, or if the
    login is subject to the table's row-level security (PostgreSQL refuses COPY FROM then)."""
    import psycopg

    try:
        with conn.transaction():
            copy_frame(conn, table, frame)
        return True
    except (psycopg.errors.UniqueViolation, psycopg.errors.FeatureNotSupported):
        return False


def _features(conn, spec: DatasetSpec, feats: pd.DataFrame, direct: Direct) -> None:  # noqa: ANN001
    names = [n for n, _ in spec.feature_columns]
    frame = feats[["lead_id", "event_timestamp", *names]]
    if direct.features and _straight_in(conn, spec.table, frame):
        return
    direct.features = False
    stage = f"stage_{spec.name}"
    conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {stage} (LIKE {spec.table} INCLUDING DEFAULTS) "
                 "ON COMMIT DELETE ROWS")
    copy_frame(conn, stage, frame)
    quoted = ", ".join(f'"{n}"' for n in names)
    conn.execute(f"""INSERT INTO {spec.table} AS t (lead_id, event_timestamp, {quoted})
        SELECT lead_id, event_timestamp, {quoted} FROM {stage}
        ON CONFLICT (lead_id, event_timestamp) DO UPDATE SET ({quoted}, created_at) =
            ({", ".join(f'EXCLUDED."{n}"' for n in names)}, now())
        WHERE ({", ".join(f't."{n}"' for n in names)}) IS DISTINCT FROM
              ({", ".join(f'EXCLUDED."{n}"' for n in names)})""")


def _labels(conn, spec: DatasetSpec, feats: pd.DataFrame, labels: pd.Series, direct: Direct) -> None:  # noqa: ANN001
    frame = pd.DataFrame({"dataset": spec.name, "lead_id": feats["lead_id"],
                          "event_timestamp": feats["event_timestamp"], "label": labels.loc[feats.index].astype(int)})
    if direct.labels and _straight_in(conn, "offline.labels", frame):
        return
    direct.labels = False
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS stage_labels (LIKE offline.labels INCLUDING DEFAULTS) "
                 "ON COMMIT DELETE ROWS")
    copy_frame(conn, "stage_labels", frame)
    conn.execute("""INSERT INTO offline.labels AS t (dataset, lead_id, event_timestamp, label)
        SELECT dataset, lead_id, event_timestamp, label FROM stage_labels
        ON CONFLICT (dataset, lead_id, event_timestamp) DO UPDATE SET label = EXCLUDED.label, created_at = now()
        WHERE t.label IS DISTINCT FROM EXCLUDED.label""")


class SeenKeys:
    """The (lead id, event time) keys of a file seen so far, as two 64-bit hashes each (16 bytes a key, where a set
    of Python tuples takes about 210): sorted blocks merged like a binary counter, so adding stays O(log n)
    amortised per key. Two independent hashes make a false "seen" about as likely as 1 in 10^20 for 10^8 keys."""

    KEYS = ("leadscore-keys-1", "leadscore-keys-2")  # hash_pandas_object's 16-byte keys

    def __init__(self) -> None:
        self.blocks: list[tuple[np.ndarray, np.ndarray]] = []  # (first hashes sorted, second hashes in that order)

    def __len__(self) -> int:
        return sum(len(a) for a, _ in self.blocks)

    def _hashes(self, feats: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        keys = feats[["lead_id", "event_timestamp"]]
        return tuple(pd.util.hash_pandas_object(keys, index=False, hash_key=k).to_numpy() for k in self.KEYS)

    def _known(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        known = np.zeros(len(a), dtype=bool)
        for first, second in self.blocks:
            lo, hi = np.searchsorted(first, a, "left"), np.searchsorted(first, a, "right")
            for i in np.flatnonzero(hi > lo):  # a first-hash match (rare): confirm with the second hash
                known[i] |= bool((second[lo[i]:hi[i]] == b[i]).any())
        return known

    def check_and_add(self, feats: pd.DataFrame) -> np.ndarray:
        """True for each row whose key an earlier row (of this file, this chunk included) had; the rest are added."""
        a, b = self._hashes(feats)
        dup = pd.DataFrame({"a": a, "b": b}).duplicated(keep="first").to_numpy() | self._known(a, b)
        order = np.argsort(a[~dup], kind="stable")
        block = (a[~dup][order], b[~dup][order])
        while self.blocks and len(self.blocks[-1][0]) <= len(block[0]):  # merge equal-sized blocks
            first, second = self.blocks.pop()
            merged = np.concatenate([first, block[0]])
            order = np.argsort(merged, kind="stable")
            block = (merged[order], np.concatenate([second, block[1]])[order])
        self.blocks.append(block)
        return dup


def _duplicates(feats: pd.DataFrame, seen: SeenKeys) -> pd.Series:
    """Rows whose (lead id, event time) an earlier row of the file had (first wins); `seen` grows by the rest."""
    return pd.Series(seen.check_and_add(feats), index=feats.index, dtype=bool)


def _brokers(conn, spec: DatasetSpec, feats: pd.DataFrame, brokers: pd.Series) -> None:  # noqa: ANN001
    """Each lead's broker (the file's last row of the lead names it; a row naming none leaves it as it was)."""
    rows = pd.DataFrame({"lead_id": feats["lead_id"], "broker": brokers.loc[feats.index], "dataset": spec.name})
    rows = rows[rows["broker"].notna()].drop_duplicates("lead_id", keep="last")
    if rows.empty:
        return
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS stage_brokers (lead_id text, broker text, dataset text) "
                 "ON COMMIT DELETE ROWS")
    copy_frame(conn, "stage_brokers", rows)
    conn.execute("""INSERT INTO offline.lead_brokers AS t (lead_id, broker, dataset)
        SELECT lead_id, broker, dataset FROM stage_brokers
        ON CONFLICT (lead_id) DO UPDATE SET broker = EXCLUDED.broker, dataset = EXCLUDED.dataset, assigned_at = now()
        WHERE t.broker IS DISTINCT FROM EXCLUDED.broker""")


def write_chunk(conn, spec: DatasetSpec, checked: CheckedChunk, sha: str, seen: SeenKeys,  # noqa: ANN001
                guard=None, result=None, direct: Direct | None = None) -> int:  # noqa: ANN001
    """Upsert one checked chunk; return rows loaded. Duplicate keys within the file are rejected, first wins.
    `guard` is the run's compliance.guard.IngestGuard, `result` its pipelines.ingest.IngestResult."""
    direct = direct or Direct()
    feats = checked.features
    if guard is not None:
        feats, erased = guard.drop_erased(feats)
        if result is not None:
            result.rows_erased += erased
    dup = _duplicates(feats, seen)
    if dup.any():
        dup_rows = pd.DataFrame({"row_number": feats.index[dup] + 0, "lead_id": feats.loc[dup, "lead_id"],
                                 "reason": "duplicate lead id and event time: an earlier row of this file has them",
                                 "payload": [{"lead_id": v} for v in feats.loc[dup, "lead_id"]]})
        checked.rejects = pd.concat([checked.rejects, dup_rows], ignore_index=True)
        feats = feats.loc[~dup]
    _features(conn, spec, feats, direct)
    if checked.labels is not None:
        _labels(conn, spec, feats, checked.labels, direct)
    for purpose, granted in checked.consent.items():
        rows = pd.DataFrame({"lead_id": feats["lead_id"], "purpose": purpose,
                             "granted": granted.loc[feats.index].astype(bool),
                             "source": spec.consent[purpose].source}).drop_duplicates("lead_id", keep="last")
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS stage_consent (lead_id text, purpose text, granted boolean, "
                     "source text) ON COMMIT DELETE ROWS")
        copy_frame(conn, "stage_consent", rows)
        changed = conn.execute("""INSERT INTO compliance.consent AS t (lead_id, purpose, granted, source)
            SELECT lead_id, purpose, granted, source FROM stage_consent
            ON CONFLICT (lead_id, purpose) DO UPDATE SET granted = EXCLUDED.granted, source = EXCLUDED.source,
                recorded_at = now()
            WHERE (t.granted, t.source) IS DISTINCT FROM (EXCLUDED.granted, EXCLUDED.source)
            RETURNING lead_id, granted""").fetchall()
        if guard is not None:
            guard.ledger(conn, purpose, changed)
    if checked.brokers is not None:
        _brokers(conn, spec, feats, checked.brokers)
    if guard is not None:
        checked.rejects = guard.drop_erased_rejects(checked.rejects)
        guard.record_minors(conn, feats)
    if len(checked.rejects):
        rej = checked.rejects.assign(dataset=spec.name, file_sha256=sha,
                                     payload=[json.dumps(p, default=str) for p in checked.rejects["payload"]])
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS stage_rejects (LIKE offline.ingest_rejects INCLUDING DEFAULTS) "
                     "ON COMMIT DELETE ROWS")
        copy_frame(conn, "stage_rejects", rej[["dataset", "file_sha256", "row_number", "lead_id", "reason",
                                                "payload"]])
        conn.execute("INSERT INTO offline.ingest_rejects (dataset, file_sha256, row_number, lead_id, reason, payload) "
                     "SELECT dataset, file_sha256, row_number, lead_id, reason, payload FROM stage_rejects "
                     "ON CONFLICT DO NOTHING")
    return len(feats)
