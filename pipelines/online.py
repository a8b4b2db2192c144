"""Online reads: one or many leads' feature vectors from Redis, through Feast, as serving uses them."""

from __future__ import annotations

import time
from collections.abc import Sequence
from itertools import repeat
from typing import Any

_UNSEEN = object()  # a value the decode cache has not seen yet


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


class OnlineReader:
    """A feature service read straight from Redis in Feast's layout: one HMGET per lead for every view.

    Same answers as `store.get_online_features` (the tests compare them), without building protobuf requests and
    responses per call: keys and hash fields are computed once here. On-demand views run their own (python-mode)
    transformation on the fetched values. Views must be keyed by a single string join key (lead_id).
    """

    def __init__(self, store, service_name: str) -> None:  # noqa: ANN001
        from pipelines.redis_codec import EntityKeyCodec, field_key

        service = store.get_feature_service(service_name)
        odfvs = {o.name: o for o in store.list_on_demand_feature_views()}
        self.columns: list[str] = []
        self.kinds: dict[str, str] = {}  # feature -> Feast's type name (BOOL, INT64, FLOAT64, STRING, ...)
        self.fields: list[bytes] = []
        self.odfvs = []
        join_keys = set()
        for projection in service.feature_view_projections:
            if projection.name in odfvs:
                self.odfvs.append(odfvs[projection.name])
                continue
            fv = store.get_feature_view(projection.name)
            join_keys |= {e.name for e in fv.entity_columns}
            for feature in projection.features:
                self.columns.append(feature.name)
                self.kinds[feature.name] = getattr(feature.dtype, "name", str(feature.dtype)).upper()
                self.fields.append(field_key(fv.name, feature.name))
        if len(join_keys) != 1:
            raise ValueError(f"feature service {service_name} mixes join keys {sorted(join_keys)}: "
                             "use store.get_online_features for it")
        self.join_key = join_keys.pop()
        self.codec = EntityKeyCodec(self.join_key, store.project)
        self.client = store._get_provider().online_store._get_client(store.config.online_store)
        self.outputs = [f.name for o in self.odfvs for f in o.features]

    def read(self, entity_ids: Sequence[str], as_of: float | None = None) -> list[dict[str, Any]]:
        """One dict per id, in order: the join key, every feature (None when missing) and on-demand outputs."""
        from pipelines.redis_codec import DECODED, decode_value, hmget_many

        keys = [self.codec.key(i) for i in entity_ids]
        if len(keys) == 1:
            raw = [self.client.hmget(keys[0], self.fields)]
        else:
            raw = hmget_many(self.client, keys, self.fields)
        rows = []
        cached, columns, unseen = DECODED.get, self.columns, repeat(_UNSEEN)
        for i, values in zip(entity_ids, raw, strict=True):
            decoded = list(map(cached, values, unseen))  # most values were seen before: one C-level pass
            if _UNSEEN in decoded:
                decoded = [decode_value(v) if d is _UNSEEN else d for d, v in zip(decoded, values, strict=True)]
            row = dict(zip(columns, decoded, strict=True))
            row[self.join_key] = str(i)
            rows.append(row)
        if self.odfvs:
            now = time.time() if as_of is None else as_of
            inputs: dict[str, list] = {c: [r[c] for r in rows] for c in self.columns}
            inputs["as_of_ts"] = [now] * len(rows)
            for odfv in self.odfvs:
                out = odfv.feature_transformation.udf(inputs)
                for feature in odfv.features:
                    for row, value in zip(rows, out[feature.name], strict=True):
                        row[feature.name] = None if value != value else value  # NaN -> None, as Feast returns
        return rows
