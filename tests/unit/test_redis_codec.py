"""Online-store keys: made as Feast makes them, and read back."""

from __future__ import annotations

import pytest

from pipelines.redis_codec import EntityKeyCodec


@pytest.mark.parametrize("lead", ["L-1", "acme/L-2", "", "ünïcode lead", "x" * 300])
def test_a_key_is_feasts_and_reads_back(lead: str) -> None:
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    codec = EntityKeyCodec("lead_id", "leadscore")
    feast_key = serialize_entity_key(EntityKey(join_keys=["lead_id"], entity_values=[Value(string_val=lead)]),
                                     entity_key_serialization_version=3) + b"leadscore"
    assert codec.key(lead) == feast_key
    assert codec.value(feast_key) == lead


def test_other_keys_read_as_none() -> None:
    codec = EntityKeyCodec("lead_id", "leadscore")
    assert codec.value(EntityKeyCodec("broker_id", "leadscore").key("B-1")) is None
    assert codec.value(EntityKeyCodec("lead_id", "other").key("L-1")) is None
    assert codec.value(codec.key("L-1")[:-12] + b"leadscore") is None  # a length that does not add up
    assert codec.value(b"consent:L-1") is None
