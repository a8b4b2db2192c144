"""`leadscore ingest crm FILE --spec SPEC`: stream a CRM export into the offline store, rejects explained.

The file is read in chunks (CSV or Parquet, any size), checked by the spec (pipelines/validate.py), and written with
COPY into a staging table, then upserted on (lead_id, event_timestamp): re-ingesting the same file changes nothing.
Labels go to `offline.labels`, consent to `compliance.consent`, failing rows to `offline.ingest_rejects` with the
reason, and one summary line per run to `offline.ingest_runs` and `compliance.audit_log`.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from infra.config import Settings
from pipelines.spec import SQL_TYPES, DatasetSpec, SpecError
from pipelines.validate import CheckedChunk, check_chunk


@dataclass
class IngestResult:
    dataset: str
    file_sha256: str
    rows_read: int = 0
    rows_loaded: int = 0
    rows_rejected: int = 0
    reasons: Counter = field(default_factory=Counter)
    unused_columns: list[str] = field(default_factory=list)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_chunks(path: Path, chunk_rows: int) -> Iterator[tuple[pd.DataFrame, int]]:
    """Yield (chunk with every column as text or None, bytes consumed so far)."""
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(path)
        per_row = path.stat().st_size / max(pf.metadata.num_rows, 1)
        done = 0
        for batch in pf.iter_batches(batch_size=chunk_rows):
            frame = batch.to_pandas().astype(object)
            frame = frame.where(frame.notna(), None).map(lambda v: None if v is None else str(v))
            done += len(frame)
            yield frame, int(done * per_row)
        return
    if suffix not in (".csv", ".txt", ".gz"):
        raise SpecError(f"{path.name}: unsupported file type {suffix!r}; give a .csv or .parquet file")
    with open(path, "rb") as fh:
        reader = pd.read_csv(fh, dtype=str, keep_default_na=False, chunksize=chunk_rows,
                             compression="infer" if suffix == ".gz" else None)
        for chunk in reader:
            yield chunk, fh.tell()


def ensure_table(conn, spec: DatasetSpec) -> None:  # noqa: ANN001
    """Create the dataset's offline table, or add the spec's new feature columns to it."""
    if spec.feature_view:  # a hand-written view's table, made by a migration: check it fits, never alter it
        have = {r[0] for r in conn.execute("SELECT column_name FROM information_schema.columns WHERE "
                                           "table_schema = 'offline' AND table_name = %s", (spec.feature_view,))}
        missing = [name for name, _ in spec.feature_columns if name not in have]
        if not have or missing:
            raise SpecError(f"spec '{spec.name}' loads into {spec.table}, which "
                            + ("does not exist" if not have else f"has no column(s) {missing}")
                            + ": add them in a new migration in infra/migrations/")
        return
    cols = ",\n".join(f'    "{name}" {SQL_TYPES[kind]}' for name, kind in spec.feature_columns)
    conn.execute(f"""CREATE TABLE IF NOT EXISTS {spec.table} (
    lead_id text NOT NULL,
    event_timestamp timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
{cols},
    PRIMARY KEY (lead_id, event_timestamp))""")
    for name, kind in spec.feature_columns:
        conn.execute(f'ALTER TABLE {spec.table} ADD COLUMN IF NOT EXISTS "{name}" {SQL_TYPES[kind]}')


def _copy_frame(conn, table: str, frame: pd.DataFrame) -> None:  # noqa: ANN001
    """COPY a frame in CSV form (an unquoted empty field is NULL)."""
    buf = io.StringIO()
    frame.to_csv(buf, index=False, header=False)
    cols = ", ".join(f'"{c}"' for c in frame.columns)
    with conn.cursor().copy(f"COPY {table} ({cols}) FROM STDIN WITH (FORMAT csv)") as copy:
        copy.write(buf.getvalue())


def write_chunk(conn, spec: DatasetSpec, checked: CheckedChunk, sha: str, seen: set) -> int:  # noqa: ANN001
    """Upsert one checked chunk; return rows loaded. Duplicate keys within the file are rejected, first wins."""
    feats = checked.features
    keys = list(zip(feats["lead_id"], feats["event_timestamp"], strict=True))
    flags = []
    for key in keys:
        flags.append(key in seen)
        seen.add(key)
    dup = pd.Series(flags, index=feats.index, dtype=bool)
    if dup.any():
        dup_rows = pd.DataFrame({"row_number": feats.index[dup] + 0, "lead_id": feats.loc[dup, "lead_id"],
                                 "reason": "duplicate lead id and event time: an earlier row of this file has them",
                                 "payload": [{"lead_id": v} for v in feats.loc[dup, "lead_id"]]})
        checked.rejects = pd.concat([checked.rejects, dup_rows], ignore_index=True)
        feats = feats.loc[~dup]
    names = [n for n, _ in spec.feature_columns]
    stage = f"stage_{spec.name}"
    conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {stage} (LIKE {spec.table} INCLUDING DEFAULTS) "
                 "ON COMMIT DELETE ROWS")
    _copy_frame(conn, stage, feats[["lead_id", "event_timestamp", *names]])
    quoted = ", ".join(f'"{n}"' for n in names)
    conn.execute(f"""INSERT INTO {spec.table} AS t (lead_id, event_timestamp, {quoted})
        SELECT lead_id, event_timestamp, {quoted} FROM {stage}
        ON CONFLICT (lead_id, event_timestamp) DO UPDATE SET ({quoted}, created_at) =
            ({", ".join(f'EXCLUDED."{n}"' for n in names)}, now())
        WHERE ({", ".join(f't."{n}"' for n in names)}) IS DISTINCT FROM
              ({", ".join(f'EXCLUDED."{n}"' for n in names)})""")
    if checked.labels is not None:
        labels = pd.DataFrame({"dataset": spec.name, "lead_id": feats["lead_id"],
                               "event_timestamp": feats["event_timestamp"],
                               "label": checked.labels.loc[feats.index].astype(int)})
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS stage_labels (LIKE offline.labels INCLUDING DEFAULTS) "
                     "ON COMMIT DELETE ROWS")
        _copy_frame(conn, "stage_labels", labels)
        conn.execute("""INSERT INTO offline.labels AS t (dataset, lead_id, event_timestamp, label)
            SELECT dataset, lead_id, event_timestamp, label FROM stage_labels
            ON CONFLICT (dataset, lead_id, event_timestamp) DO UPDATE SET label = EXCLUDED.label, created_at = now()
            WHERE t.label IS DISTINCT FROM EXCLUDED.label""")
    for purpose, granted in checked.consent.items():
        rows = pd.DataFrame({"lead_id": feats["lead_id"], "purpose": purpose,
                             "granted": granted.loc[feats.index].astype(bool),
                             "source": spec.consent[purpose].source}).drop_duplicates("lead_id", keep="last")
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS stage_consent (lead_id text, purpose text, granted boolean, "
                     "source text) ON COMMIT DELETE ROWS")
        _copy_frame(conn, "stage_consent", rows)
        conn.execute("""INSERT INTO compliance.consent AS t (lead_id, purpose, granted, source)
            SELECT lead_id, purpose, granted, source FROM stage_consent
            ON CONFLICT (lead_id, purpose) DO UPDATE SET granted = EXCLUDED.granted, source = EXCLUDED.source,
                recorded_at = now()
            WHERE (t.granted, t.source) IS DISTINCT FROM (EXCLUDED.granted, EXCLUDED.source)""")
    if len(checked.rejects):
        rej = checked.rejects.assign(dataset=spec.name, file_sha256=sha,
                                     payload=[json.dumps(p, default=str) for p in checked.rejects["payload"]])
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS stage_rejects (LIKE offline.ingest_rejects INCLUDING DEFAULTS) "
                     "ON COMMIT DELETE ROWS")
        _copy_frame(conn, "stage_rejects", rej[["dataset", "file_sha256", "row_number", "lead_id", "reason",
                                                 "payload"]])
        conn.execute("INSERT INTO offline.ingest_rejects (dataset, file_sha256, row_number, lead_id, reason, payload) "
                     "SELECT dataset, file_sha256, row_number, lead_id, reason, payload FROM stage_rejects "
                     "ON CONFLICT DO NOTHING")
    return len(feats)


def ingest_crm(settings: Settings, path: Path, spec: DatasetSpec, chunk_rows: int = 50_000,
               progress: bool = True) -> IngestResult:
    """Load `path` into the offline store by `spec`; see the module docstring."""
    import psycopg
    from tqdm import tqdm

    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{path} does not exist")
    result = IngestResult(spec.name, file_sha256(path))
    pii_key = settings.secret("pii_hmac", create=True).encode()
    seen: set = set()
    with psycopg.connect(settings.pg_dsn()) as conn:
        ensure_table(conn, spec)
        run_id = conn.execute("INSERT INTO offline.ingest_runs (dataset, file_name, file_sha256) VALUES (%s, %s, %s) "
                              "RETURNING id", (spec.name, path.name, result.file_sha256)).fetchone()[0]
        conn.commit()
        bar = tqdm(total=path.stat().st_size, unit="B", unit_scale=True, desc=f"ingest {spec.name}",
                   disable=not progress)
        for chunk, consumed in read_chunks(path, chunk_rows):
            if result.rows_read == 0:
                missing = sorted(spec.known_columns() - set(chunk.columns) - set(spec.ignore))
                if missing:
                    raise SpecError(f"{path.name} has no column(s) {missing} that spec '{spec.name}' names; "
                                    f"the file has {list(chunk.columns)[:12]}...")
                result.unused_columns = sorted(set(chunk.columns) - spec.known_columns())
            chunk.index = pd.RangeIndex(result.rows_read + 1, result.rows_read + 1 + len(chunk))
            checked = check_chunk(chunk, spec, result.rows_read + 1, pii_key)
            with conn.transaction():
                result.rows_loaded += write_chunk(conn, spec, checked, result.file_sha256, seen)
            result.rows_read += len(chunk)
            result.rows_rejected += len(checked.rejects)
            result.reasons.update(r.split(":")[0] for r in checked.rejects["reason"])
            bar.update(consumed - bar.n)
        bar.close()
        conn.execute("UPDATE offline.ingest_runs SET finished_at = now(), rows_read = %s, rows_loaded = %s, "
                     "rows_rejected = %s WHERE id = %s",
                     (result.rows_read, result.rows_loaded, result.rows_rejected, run_id))
        conn.execute("INSERT INTO compliance.audit_log (actor, action, detail) VALUES ('ingest', 'ingest_crm', %s)",
                     (json.dumps({"dataset": spec.name, "file": path.name, "sha256": result.file_sha256,
                                  "loaded": result.rows_loaded, "rejected": result.rows_rejected}),))
        conn.commit()
    return result
