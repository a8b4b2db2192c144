"""Online reads: one or many leads' feature vectors from Redis, through Feast, as serving uses them."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any


def needs_request_time(store, service_name: str) -> bool:  # noqa: ANN001
    """True if the service has an on-demand view that reads `as_of_ts` from the request."""
    service = store.get_feature_service(service_name)
    odfv_names = {p.name for p in service.feature_view_projections}
    return any(odfv.name in odfv_names and odfv.source_request_sources
               for odfv in store.list_on_demand_feature_views())


def online_features(store, service_name: str, lead_ids: Sequence[str], as_of: float | None = None,  # noqa: ANN001
                    request_time: bool | None = None) -> list[dict[str, Any]]:
    """Feature vectors of `lead_ids` (one dict per lead, in order) for the feature service `service_name`.

    Missing leads come back with None features. `as_of` (unix seconds, default now) feeds on-demand recencies.
    """
    service = store.get_feature_service(service_name)
    if request_time is None:
        request_time = needs_request_time(store, service_name)
    now = time.time() if as_of is None else as_of
    rows = [{"lead_id": str(lead_id), **({"as_of_ts": now} if request_time else {})} for lead_id in lead_ids]
    columns = store.get_online_features(features=service, entity_rows=rows).to_dict()
    names = list(columns)
    return [{name: columns[name][i] for name in names} for i in range(len(rows))]
