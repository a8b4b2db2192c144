"""`leadscore dataset list | drop NAME`: what each dataset has stored, and replacing a dataset from scratch.

`drop` removes everything ingest and materialize made for a spec-generated dataset: its feature view, feature
services and data source in the Feast registry, the view's fields in Redis (every lead key of the project), its rows
in `offline.labels`, `offline.ingest_rejects`, `offline.ingest_runs` and `offline.materialization_runs`, and its table
`offline.<name>`; one audit row records the counts. Consent records stay: they belong to the lead, not the dataset.
A hand-written view's table (made by a migration) is never dropped. The spec file is left where it is: the next
`leadscore features apply` registers the (empty) view again unless the spec is moved away.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from infra.config import REPO_ROOT, Settings
from pipelines.spec import IDENTIFIER, DatasetSpec, load_all_specs, load_spec

DATASETS_DIR = REPO_ROOT / "feature_repo" / "datasets"
MIGRATIONS_DIR = REPO_ROOT / "infra" / "migrations"
SCAN_COUNT = 1000
BOOKKEEPING = (("labels", "dataset"), ("ingest_rejects", "dataset"), ("ingest_runs", "dataset"),
               ("lead_brokers", "dataset"), ("materialization_runs", "feature_view"))


class DatasetError(ValueError):
    """A dataset that cannot be dropped or listed as asked; the message says why and what to do."""


@dataclass
class DatasetInfo:
    """What one dataset has stored offline (None: its table does not exist)."""

    name: str
    spec_path: Path | None
    table: str
    rows: int | None
    counts: dict[str, int] = field(default_factory=dict)  # bookkeeping table -> rows of this dataset
    hand_written: str | None = None  # the hand-written feature view it loads into

    def summary(self) -> str:
        table = f"table {self.table} ({self.rows} rows)" if self.rows is not None else f"no table {self.table}"
        return f"{table}, " + ", ".join(f"{n} rows in offline.{t}" for t, n in self.counts.items())


@dataclass
class DropResult:
    info: DatasetInfo
    online_keys: int = 0
    online_fields: int = 0
    registry: list[str] = field(default_factory=list)
    audit_id: int | None = None


def find_spec(name: str, folder: Path = DATASETS_DIR) -> tuple[DatasetSpec | None, Path | None]:
    """The spec whose `name` is `name` in `folder` (and its file), or (None, None)."""
    for path in sorted(Path(folder).glob("*.yaml")):
        spec = load_spec(path)
        if spec.name == name:
            return spec, path
    return None, None


def _glob_escape(raw: bytes) -> bytes:
    """`raw` as a literal in a Redis MATCH pattern."""
    return re.sub(rb"([*?\[\]\\])", rb"\\\1", raw)


def migration_tables(folder: Path = MIGRATIONS_DIR) -> set[str]:
    """Tables of schema `offline` that migrations create: hand-written views' tables and bookkeeping."""
    found = set()
    for path in folder.glob("*.sql"):
        found |= set(re.findall(r"CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?offline\.(\w+)", path.read_text(), re.I))
    return found


def dataset_info(conn, name: str, folder: Path = DATASETS_DIR) -> DatasetInfo:  # noqa: ANN001 - psycopg connection
    """Counts of what dataset `name` has stored; refuses names that are no dataset or a hand-written table."""
    if not IDENTIFIER.match(name):
        raise DatasetError(f"{name!r} is not a dataset name (lower_snake_case, as in a spec's `name:`)")
    spec, path = find_spec(name, folder)
    table = spec.table if spec else f"offline.{name}"
    exists = conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0] is not None
    rows = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] if exists else None
    counts = {t: conn.execute(f"SELECT count(*) FROM offline.{t} WHERE {col} = %s", (name,)).fetchone()[0]
              for t, col in BOOKKEEPING}
    info = DatasetInfo(name, path, table, rows, counts, spec.feature_view if spec else None)
    if spec is None and rows is None and not any(counts.values()):
        raise DatasetError(f"no dataset {name!r}: no spec named {name!r} in {folder}, no table {table} and no "
                           "labels, rejects or runs of it (`leadscore dataset list` shows what there is)")
    return info


def _refuse_hand_written(info: DatasetInfo, store) -> None:  # noqa: ANN001 - feast.FeatureStore
    if info.hand_written:
        raise DatasetError(f"dataset {info.name!r} loads into the hand-written feature view {info.hand_written!r} "
                           f"({info.table}, made by a migration): `dataset drop` drops only tables ingest generated "
                           "from a spec; delete its rows by hand or in a new migration")
    if info.spec_path is None and not info.counts["ingest_runs"]:
        raise DatasetError(f"no spec named {info.name!r} and no ingest run of it: {info.table} was not made by "
                           "ingest, so `dataset drop` leaves it alone")
    if info.table.split(".", 1)[1] in migration_tables():
        raise DatasetError(f"{info.table} is made by a migration (a hand-written view's table or LeadScore's "
                           "bookkeeping), not by ingest: `dataset drop` does not drop it")
    view = next((fv for fv in _listed(store.list_feature_views) if fv.name == info.name), None)
    if view is not None and view.tags.get("kind") != "crm-dataset":
        raise DatasetError(f"feature view {info.name!r} is hand-written (feature_repo/feature_views.py), not "
                           "generated from a spec: `dataset drop` does not remove it")


def _listed(lister) -> list:  # noqa: ANN001 - a FeatureStore.list_* method
    """The registry's objects, or none when the repo was never applied (`features apply`)."""
    from feast.errors import FeastObjectNotFoundException, ProjectNotFoundException

    try:
        return lister()
    except (FeastObjectNotFoundException, ProjectNotFoundException):
        return []


def _forget_registry(store, name: str) -> tuple[list[str], list[str]]:  # noqa: ANN001
    """Delete the view, the services that read it and its source from the registry; (removed, view features)."""
    from feast.errors import FeastObjectNotFoundException, ProjectNotFoundException

    removed, features = [], []
    for service in _listed(store.list_feature_services):
        if any(p.name == name for p in service.feature_view_projections):
            store.delete_feature_service(service.name)
            removed.append(f"feature service {service.name}")
    try:
        features = [f.name for f in store.get_feature_view(name).features]
        store.delete_feature_view(name)
        removed.append(f"feature view {name}")
    except (FeastObjectNotFoundException, ProjectNotFoundException):
        pass
    try:
        store.registry.delete_data_source(f"{name}_source", store.project, commit=True)
        removed.append(f"data source {name}_source")
    except (FeastObjectNotFoundException, ProjectNotFoundException):
        pass
    return removed, features


def forget_online(client, project: str, view: str, features: list[str]) -> tuple[int, int]:  # noqa: ANN001
    """HDEL the view's feature fields and `_ts:<view>` from every lead key of `project`; (keys touched, fields)."""
    from pipelines.redis_codec import EntityKeyCodec, field_key

    codec = EntityKeyCodec("lead_id", project)
    pattern = _glob_escape(codec.prefix) + b"*" + _glob_escape(codec.suffix)
    fields = [field_key(view, f) for f in dict.fromkeys(features)] + [f"_ts:{view}".encode()]
    keys = fields_removed = 0
    batch: list[bytes] = []

    def flush() -> None:
        nonlocal keys, fields_removed
        with client.pipeline(transaction=False) as pipe:
            for key in batch:
                pipe.hdel(key, *fields)
            done = pipe.execute()
        keys += sum(1 for n in done if n)
        fields_removed += sum(done)
        batch.clear()

    for key in client.scan_iter(match=pattern, count=SCAN_COUNT):
        batch.append(key)
        if len(batch) >= SCAN_COUNT:
            flush()
    if batch:
        flush()
    return keys, fields_removed


def plan_drop(settings: Settings, name: str, folder: Path = DATASETS_DIR,
              repo_path: Path | None = None) -> tuple[DatasetInfo, object]:
    """What `drop_dataset` would remove, and the feature store it uses; refuses what it must not drop."""
    import psycopg

    from pipelines.feature_store import FEATURE_REPO, feature_store

    with psycopg.connect(settings.pg_dsn()) as conn:
        info = dataset_info(conn, name, folder)
    store = feature_store(settings, repo_path or FEATURE_REPO)
    _refuse_hand_written(info, store)
    return info, store


def drop_dataset(settings: Settings, name: str, folder: Path = DATASETS_DIR,
                 repo_path: Path | None = None) -> DropResult:
    """Remove everything dataset `name` stored (see the module docstring); safe to run again after a failure."""
    import psycopg

    info, store = plan_drop(settings, name, folder, repo_path)
    result = DropResult(info)
    spec, _ = find_spec(name, folder)
    result.registry, view_features = _forget_registry(store, name)  # first: no materialize run sees the view again
    features = view_features + [n for n, _ in (spec.feature_columns if spec else [])]
    client = store._get_provider().online_store._get_client(store.config.online_store)
    result.online_keys, result.online_fields = forget_online(client, store.project, name, features)
    with psycopg.connect(settings.pg_dsn()) as conn, conn.transaction():
        for table, col in BOOKKEEPING:
            conn.execute(f"DELETE FROM offline.{table} WHERE {col} = %s", (name,))
        conn.execute(f"DROP TABLE IF EXISTS {info.table}")
        detail = {"dataset": name, "table": info.table, "rows": info.rows, **info.counts,
                  "online_keys": result.online_keys, "online_fields": result.online_fields,
                  "registry": result.registry}
        result.audit_id = conn.execute("INSERT INTO compliance.audit_log (actor, action, detail) VALUES "
                                       "('dataset', 'dataset_drop', %s) RETURNING id",
                                       (json.dumps(detail),)).fetchone()[0]
    return result


def list_datasets(settings: Settings, folder: Path = DATASETS_DIR) -> list[DatasetInfo]:
    """Every spec's dataset, then datasets ingested whose spec is gone, with their stored counts."""
    import psycopg

    infos = []
    with psycopg.connect(settings.pg_dsn()) as conn:
        names = [s.name for s in load_all_specs(folder)]
        names += [r[0] for r in conn.execute("SELECT DISTINCT dataset FROM offline.ingest_runs ORDER BY 1")
                  if r[0] not in names]
        for name in names:
            try:
                infos.append(dataset_info(conn, name, folder))
            except DatasetError:
                continue
    return infos
