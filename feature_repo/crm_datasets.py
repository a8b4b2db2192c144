"""A feature view and a feature service for every dataset spec in `datasets/` (bring-your-own CSV).

The spec (see docs/bring-your-own-data.md) is the single description of a dataset: ingest loads its file into
`offline.<name>` by it, and this module turns it into the `<name>` feature view and the `<name>_v<version>` service.
"""

from datetime import timedelta
from pathlib import Path

from entities import lead
from feast import FeatureService, FeatureView, Field
from feast.infra.offline_stores.contrib.postgres_offline_store.postgres_source import PostgreSQLSource
from feast.types import Bool, Float64, Int64, String, UnixTimestamp

from pipelines.spec import load_all_specs

FEAST_TYPES = {"string": String, "int": Int64, "float": Float64, "bool": Bool, "date": UnixTimestamp}
DATASETS_DIR = Path(__file__).resolve().parent / "datasets"


def _objects_for(spec):  # noqa: ANN001, ANN202 - returns (source, view, service)
    source = PostgreSQLSource(
        name=f"{spec.name}_source",
        table=spec.table,
        timestamp_field="event_timestamp",
        created_timestamp_column="created_at",
        description=f"CRM ingest of the {spec.name} dataset ({spec.source_url or 'no public url'}).",
        owner=spec.owner,
        tags={"origin": "crm-ingest", "spec": f"datasets/{spec.name}.yaml"},
    )
    descriptions = {f.name: f.description for f in spec.features}
    view = FeatureView(
        name=spec.name,
        entities=[lead],
        ttl=timedelta(days=spec.ttl_days),
        schema=[Field(name=name, dtype=FEAST_TYPES[kind], description=descriptions.get(name, "keyed hash of PII"))
                for name, kind in spec.feature_columns],
        source=source,
        online=True,
        description=spec.description,
        owner=spec.owner,
        tags={"kind": "crm-dataset", "leaks_excluded": str(len(spec.leaks_label))},
    )
    service = FeatureService(
        name=spec.feature_service,
        features=[view],
        description=f"Every feature of the {spec.name} dataset (spec version {spec.version}).",
        owner=spec.owner,
        tags={"dataset": spec.name, "version": str(spec.version)},
    )
    return source, view, service


# Feast collects module-level objects: expose each dataset's objects under readable names.
for _spec in load_all_specs(DATASETS_DIR):
    if _spec.feature_view:  # loads into a hand-written view's table (feature_views.py): nothing to generate
        continue
    _source, _view, _service = _objects_for(_spec)
    globals()[f"{_spec.name}_source"] = _source
    globals()[f"{_spec.name}_fv"] = _view
    globals()[f"{_spec.name}_{_spec.version}_service"] = _service
