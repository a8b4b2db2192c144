"""Tenant identity: stored ids, events and ingest rows of a tenant, and the training choice."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from compliance.tenants import TenantError, check_tenant, choose_tenants, split_id, stored_id, tenants_of


def test_a_tenants_lead_is_stored_under_its_tenant_and_the_default_tenant_bare() -> None:
    assert stored_id("acme", "L-1") == "acme/L-1" and split_id("acme/L-1") == ("acme", "L-1")
    assert stored_id("default", "L-1") == stored_id(None, "L-1") == stored_id("admin", "L-1") == "L-1"
    assert split_id("L-1") == ("default", "L-1")
    with pytest.raises(TenantError, match="reserves for tenants"):
        stored_id("acme", "other/L-1")  # no id may reach into another tenant's space


@pytest.mark.parametrize("name", ["", "Acme", "a b", "acme/x", "-acme", "x" * 33, "acme\n"])
def test_a_bad_tenant_name_is_refused(name: str) -> None:
    with pytest.raises(TenantError, match="not a tenant name"):
        check_tenant(name)


def _event(**extra: object) -> bytes:
    return json.dumps({"event_id": "e1", "lead_id": "L-1", "event_time": "2026-12-01T00:00:00+00:00",
                       "action": "session", **extra}).encode()


def test_an_events_tenant_puts_it_in_that_tenants_space() -> None:
    from pipelines.streams.parse import BadEvent, parse

    web = "lead.web"
    acme = parse(web, b"L-1", _event(tenant="acme"))
    assert (acme.lead_id, acme.event_id) == ("acme/L-1", "acme/e1")  # its event id too: de-duplication per tenant
    plain = parse(web, b"L-1", _event())
    assert (plain.lead_id, plain.event_id) == ("L-1", "e1") == (parse(web, None, _event(tenant="default")).lead_id,
                                                               "e1")
    for bad, why in ((_event(tenant="Not A Tenant"), "not a tenant name"), (_event(tenant=7), "must be a string"),
                     (_event(lead_id="acme/L-1"), "reserved for tenants")):
        with pytest.raises(BadEvent, match=why) as caught:
            parse(web, None, bad)
        assert caught.value.reason == "invalid_value"


def test_ingest_rows_carry_the_tenant_and_an_id_with_a_slash_is_rejected() -> None:
    from pipelines.spec import DatasetSpec
    from pipelines.validate import check_chunk

    spec = DatasetSpec.model_validate({
        "name": "t", "description": "d", "owner": "o", "tenant": "acme", "entity": {"column": "id"},
        "event_timestamp": {"default": "2026-01-01T00:00:00Z"}, "consent": {"scoring": {"default": True,
                                                                                         "source": "tests"}},
        "features": [{"column": "x", "name": "x", "type": "int"}]})
    raw = pd.DataFrame({"id": ["L-1", "a/b", "L-3"], "x": ["1", "2", "3"]}, dtype=str)
    checked = check_chunk(raw.copy(), spec, 1, b"k")
    assert list(checked.features["lead_id"]) == ["acme/L-1", "acme/L-3"]
    assert "reserves for tenants" in checked.rejects["reason"].iloc[0]
    other = check_chunk(raw.copy(), spec, 1, b"k", tenant="beta")  # --tenant over the spec's
    assert list(other.features["lead_id"]) == ["beta/L-1", "beta/L-3"]
    with pytest.raises(ValueError, match="not a tenant name"):
        DatasetSpec.model_validate({**spec.model_dump(exclude_none=True), "tenant": "Bad Name"})


def test_training_across_tenants_needs_the_flag() -> None:
    frame = pd.DataFrame({"lead_id": ["acme/1", "acme/2", "beta/1", "3"], "label": [0, 1, 0, 1]})
    assert list(tenants_of(frame["lead_id"])) == ["acme", "acme", "beta", "default"]
    with pytest.raises(TenantError, match="3 tenants"):
        choose_tenants(frame, None, False)
    one, names = choose_tenants(frame, "acme", False)
    assert list(one["lead_id"]) == ["acme/1", "acme/2"] and names == "acme"
    assert choose_tenants(frame, None, True)[1] == "acme,beta,default"
    with pytest.raises(TenantError, match="no lead of tenant 'zeta'"):
        choose_tenants(frame, "zeta", False)
    single = frame[frame["lead_id"].str.startswith("acme/")]
    assert choose_tenants(single, None, False)[1] == "acme"


def test_ingest_rows_carry_their_broker_and_a_bad_broker_id_is_rejected() -> None:
    from pipelines.spec import DatasetSpec
    from pipelines.validate import check_chunk

    spec = DatasetSpec.model_validate({
        "name": "t", "description": "d", "owner": "o", "entity": {"column": "id"}, "broker_column": "owner",
        "event_timestamp": {"default": "2026-01-01T00:00:00Z"}, "consent": {"scoring": {"default": True,
                                                                                         "source": "tests"}},
        "features": [{"column": "x", "name": "x", "type": "int"}]})
    assert "owner" in spec.known_columns()
    raw = pd.DataFrame({"id": ["L-1", "L-2", "L-3", "L-4"], "x": ["1", "2", "3", "4"],
                        "owner": [" BR-7 ", "", "bad broker<x>", "agent@acme"]}, dtype=str)
    checked = check_chunk(raw.copy(), spec, 1, b"k")
    assert list(checked.features["lead_id"]) == ["L-1", "L-2", "L-4"]
    assert list(checked.brokers) == ["BR-7", None, "agent@acme"]  # an empty cell: not assigned, not refused
    assert checked.rejects["reason"].tolist() == ["broker 'bad broker<x>' is not a broker id: 1-64 of A-Z, a-z, 0-9, "
                                                  "_ . : @ - (column 'owner')"]
