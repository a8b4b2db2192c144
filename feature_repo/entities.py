"""Entities: what LeadScore's features describe."""

from feast import Entity, ValueType

lead = Entity(
    name="lead",
    join_keys=["lead_id"],
    value_type=ValueType.STRING,
    description="A broker's prospective customer. The id is the CRM's opaque id, or a keyed hash of it when the "
    "CRM's id is personal data (a phone number, an email).",
    owner="data-platform@leadscore",
    tags={"pii": "false", "team": "data-platform"},
)

city = Entity(
    name="city",
    join_keys=["city"],
    value_type=ValueType.STRING,
    description="An Indian city, the key of market context (interest rates, prices, inventory).",
    owner="data-platform@leadscore",
    tags={"pii": "false", "team": "data-platform"},
)
