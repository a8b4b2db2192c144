"""The direct Redis path reads and writes exactly what Feast does, for every kind of view."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from infra.config import Settings
from pipelines.materialize import materialize
from pipelines.online import OnlineReader, online_features

pytestmark = pytest.mark.integration
LEADS = ["T-ENG-1", "T-ENG-2", "T-ENG-3"]
NO_CONSENT = "T-ENG-NOCONSENT"


@pytest.fixture(scope="module")
def engaged_leads(settings: Settings, applied_store):  # noqa: ANN001, ANN201
    import psycopg

    now = datetime.now(UTC)
    with psycopg.connect(settings.pg_dsn()) as conn:
        for i, lead in enumerate([*LEADS, NO_CONSENT]):
            conn.execute("INSERT INTO offline.lead_demographics (lead_id, event_timestamp, age_band, annual_income_inr,"
                         " employment_type, cibil_score, cibil_band, city, city_tier, household_size, profession) "
                         "VALUES (%s, %s, '25-34', %s, 'salaried', %s, 'good', 'Pune', 2, 3, 'engineer')",
                         (lead, now - timedelta(days=3), 900000.0 + i, 700 + i))
            conn.execute("INSERT INTO offline.lead_engagement (lead_id, event_timestamp, listing_views_7d, "
                         "listing_views_30d, emails_sent_30d, emails_opened_30d, emails_clicked_30d, time_on_site_s_1d,"
                         " first_touch_ts, last_event_ts) VALUES (%s, %s, %s, 10, 8, %s, 1, 12.5, %s, %s)",
                         (lead, now - timedelta(hours=2), 2 + i, 4 + i, (now - timedelta(days=9)).timestamp(),
                          (now - timedelta(hours=2)).timestamp()))
            conn.execute("INSERT INTO compliance.consent (lead_id, purpose, granted, source) VALUES (%s, 'scoring', "
                         "%s, 'test') ON CONFLICT (lead_id, purpose) DO UPDATE SET granted = EXCLUDED.granted",
                         (lead, lead != NO_CONSENT))
    materialize(settings, ["lead_demographics", "lead_engagement"])
    return now


def _same(a: object, b: object) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isclose(a, b, rel_tol=1e-12))


def test_reader_equals_feast_for_the_scoring_service(applied_store, engaged_leads) -> None:  # noqa: ANN001
    as_of = engaged_leads.timestamp()
    ids = [*LEADS, NO_CONSENT, "never-seen"]
    ours = OnlineReader(applied_store, "lead_scoring_v1").read(ids, as_of=as_of)
    feast = online_features(applied_store, "lead_scoring_v1", ids, as_of=as_of)
    assert [r.keys() for r in ours] == [r.keys() for r in feast]
    for a, b in zip(ours, feast, strict=True):
        assert all(_same(a[k], b[k]) for k in b), [(k, a[k], b[k]) for k in b if not _same(a[k], b[k])]
    first = ours[0]
    assert first["annual_income_inr"] == 900000.0 and first["cibil_score"] == 700
    assert first["email_open_rate_30d"] == pytest.approx(4 / 8)
    assert first["engagement_velocity"] == pytest.approx(2 / 10 * 30 / 7)
    assert first["days_since_first_touch"] == pytest.approx(9, abs=1e-6)
    assert ours[3]["cibil_score"] is None, "a lead without scoring consent must not be online"


def test_reader_sees_what_feast_pushes_and_materialize_never_overwrites_newer(
        settings: Settings, applied_store, engaged_leads) -> None:  # noqa: ANN001
    from feast.data_source import PushMode

    lead = LEADS[1]
    newer = engaged_leads + timedelta(minutes=1)
    row = {c: 0 for c in OnlineReader(applied_store, "lead_scoring_v1").columns if c.endswith(("_1d", "_7d", "_30d"))}
    row.update(lead_id=lead, event_timestamp=newer, created_at=newer, listing_views_30d=99, time_on_site_s_1d=1.0,
               time_on_site_s_7d=1.0, time_on_site_s_30d=1.0, whatsapp_reply_latency_s_30d=30.0,
               first_touch_ts=1.0, last_event_ts=newer.timestamp())
    applied_store.push("lead_engagement_push", pd.DataFrame([row]), to=PushMode.ONLINE)
    reader = OnlineReader(applied_store, "lead_scoring_v1")
    assert reader.read([lead])[0]["listing_views_30d"] == 99
    import psycopg

    with psycopg.connect(settings.pg_dsn()) as conn:  # an older row arrives late in the offline store
        conn.execute("INSERT INTO offline.lead_engagement (lead_id, event_timestamp, listing_views_30d) "
                     "VALUES (%s, %s, 5)", (lead, engaged_leads - timedelta(hours=1)))
    materialize(settings, ["lead_engagement"])
    assert reader.read([lead])[0]["listing_views_30d"] == 99


def test_entity_keys_and_field_hashes_match_feast(applied_store) -> None:  # noqa: ANN001
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.infra.online_stores.helpers import _mmh3
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    from pipelines.redis_codec import EntityKeyCodec, encode_timestamp, encode_value, field_key

    codec = EntityKeyCodec("lead_id", applied_store.project)
    for lead in ["a", "lead-ü-42", "x" * 300]:
        expected = serialize_entity_key(EntityKey(join_keys=["lead_id"], entity_values=[Value(string_val=lead)]), 3)
        assert codec.key(lead) == expected + applied_store.project.encode()
    assert field_key("lead_engagement", "calls_7d") == _mmh3("lead_engagement:calls_7d")
    for kind, value, proto in [("float", 1.25, Value(double_val=1.25)), ("float", 0.0, Value(double_val=0.0)),
                               ("int", -7, Value(int64_val=-7)), ("int", 300, Value(int64_val=300)),
                               ("bool", False, Value(bool_val=False)), ("string", "Pune ü", Value(string_val="Pune ü")),
                               ("string", None, Value()),
                               ("date", datetime(2024, 5, 1, 9, tzinfo=UTC), Value(unix_timestamp_val=1714554000)),
                               ("date", None, Value())]:
        assert encode_value(kind, value) == proto.SerializeToString(), (kind, value)
    from pipelines.redis_codec import decode_value

    assert decode_value(Value(unix_timestamp_val=1714554000).SerializeToString()) == datetime(2024, 5, 1, 9, tzinfo=UTC)
    from google.protobuf.timestamp_pb2 import Timestamp

    ts = Timestamp()
    ts.FromDatetime(datetime(2024, 5, 1, 12, 30, 15, 250000, tzinfo=UTC))
    assert encode_timestamp(datetime(2024, 5, 1, 12, 30, 15, 250000, tzinfo=UTC).timestamp()) == \
        ts.SerializeToString()
