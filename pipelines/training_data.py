"""`leadscore features training-set`: a feature service's point-in-time training set for a labelled dataset.

Entity rows are the dataset's labels (`offline.labels`: lead, time, label); each feature view of the service is
joined as of the label's time by `pipelines.training_set.point_in_time_join` (Feast's semantics, set-based SQL);
on-demand views are computed on the joined rows with `as_of_ts` = the label's time, exactly as serving computes
them with the request's time.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from compliance.children import unprotected_minor
from infra.config import Settings
from infra.process import ServiceError
from pipelines.ingest_runs import check_whole

log = logging.getLogger("leadscore.training")


def dataset_of(service) -> str:  # noqa: ANN001 - feast.FeatureService
    """The label set a feature service trains on: its `dataset` tag, else its name without `_v<N>`."""
    return service.tags.get("dataset") or service.name.rsplit("_v", 1)[0]


APPLICATION = "leadscore-training-set"  # its connections' application_name (pg_stat_activity)
ROLE = "train"  # its PostgreSQL login (infra/migrations/0022_train_role.sql): reads, no DDL


def build_training_set(settings: Settings, service_name: str, dataset: str | None = None, store=None,  # noqa: ANN001
                       repo_path: Path | None = None, tries: int = 3) -> pd.DataFrame:
    """lead_id, event_timestamp, label and every feature of the service, one row per label, no future leakage.

    The set is built in read-only queries: if PostgreSQL goes away midway (a restart), it is built again from the
    start once PostgreSQL answers, up to `tries` times."""
    from pipelines.ingest_runs import connection_lost, wait_for_postgres

    for attempt in range(1, tries + 1):
        try:
            return _build(settings, service_name, dataset, store, repo_path)
        except Exception as exc:
            if not connection_lost(exc):
                raise
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            if attempt == tries or not wait_for_postgres(settings, role=ROLE):
                raise ServiceError(f"PostgreSQL went away while the training set of {service_name} was built "
                                   f"({first}): run `leadscore infra up`, then this again") from None
            log.warning("PostgreSQL went away while building the training set of %s (%s); it answers again: "
                        "building it again (attempt %d of %d)", service_name, first, attempt + 1, tries)
    raise AssertionError("unreachable")


def _build(settings: Settings, service_name: str, dataset: str | None, store, repo_path: Path | None):  # noqa: ANN001, ANN202
    import psycopg

    from pipelines.feature_store import FEATURE_REPO, feature_store
    from pipelines.training_set import point_in_time_join, view_spec_from_feast

    store = store or feature_store(settings, repo_path or FEATURE_REPO, role=ROLE)
    service = store.get_feature_service(service_name)
    dataset = dataset or dataset_of(service)
    dsn = f"{settings.pg_dsn(role=ROLE)}?application_name={APPLICATION}"
    with psycopg.connect(dsn) as conn:
        check_whole(conn, dataset)  # its newest ingest finished: a failed run's rows are partly loaded
        entity_df = pd.DataFrame(conn.execute(
            # a lead whose scoring consent (which covers training) was withdrawn or expired is left out
            "SELECT lead_id, event_timestamp, label FROM offline.labels l WHERE dataset = %s AND NOT EXISTS ("
            "SELECT 1 FROM compliance.consent c WHERE c.lead_id = l.lead_id AND c.purpose = 'scoring' AND NOT "
            "(c.granted AND (c.expires_at IS NULL OR c.expires_at > now()))) AND NOT " + unprotected_minor("l.lead_id")
            + " ORDER BY event_timestamp, lead_id",
            (dataset,)).fetchall(), columns=["lead_id", "event_timestamp", "label"])
    if entity_df.empty:
        raise ValueError(f"no labels for dataset {dataset!r} in offline.labels: ingest its file first "
                         f"(leadscore ingest crm FILE --spec feature_repo/datasets/{dataset}.yaml)")
    odfv_names = {o.name: o for o in store.list_on_demand_feature_views()}
    views, odfvs = [], []
    for projection in service.feature_view_projections:
        if projection.name in odfv_names:
            odfvs.append(odfv_names[projection.name])
            continue
        fv = store.get_feature_view(projection.name)
        fv.projection = projection
        views.append(view_spec_from_feast(fv))
    frame = point_in_time_join(dsn, entity_df, views)
    if odfvs:
        inputs = {c: [None if pd.isna(v) else v for v in frame[c]] for c in frame.columns
                  if c not in ("lead_id", "event_timestamp", "label")}
        inputs["as_of_ts"] = [t.timestamp() for t in pd.to_datetime(frame["event_timestamp"], utc=True)]
        for odfv in odfvs:
            out = odfv.feature_transformation.udf(inputs)
            for feature in odfv.features:
                frame[feature.name] = pd.Series(out[feature.name], index=frame.index, dtype="float64")
    return frame
