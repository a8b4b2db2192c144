"""Data sources: the offline tables in PostgreSQL (schema `offline`) and the push source fed by the streams."""

from feast import PushSource
from feast.infra.offline_stores.contrib.postgres_offline_store.postgres_source import PostgreSQLSource

lead_demographics_source = PostgreSQLSource(
    name="lead_demographics_source",
    table="offline.lead_demographics",
    timestamp_field="event_timestamp",
    created_timestamp_column="created_at",
    description="Lead profiles from CRM exports and brokers' forms, one row per lead per update.",
    owner="data-platform@leadscore",
    tags={"origin": "crm", "pii": "hashed-or-absent"},
)

lead_engagement_source = PostgreSQLSource(
    name="lead_engagement_source",
    table="offline.lead_engagement",
    timestamp_field="event_timestamp",
    created_timestamp_column="created_at",
    description="Windowed engagement counts per lead, appended by the stream workers on every change.",
    owner="data-platform@leadscore",
    tags={"origin": "streams"},
)

lead_engagement_push_source = PushSource(
    name="lead_engagement_push",
    batch_source=lead_engagement_source,
    description="Fresh engagement rows pushed to the online store by the stream workers (ONLINE only: Feast's "
    "PostgreSQL offline store cannot take pushes, so the workers write the offline rows themselves).",
    owner="data-platform@leadscore",
    tags={"origin": "streams"},
)

market_context_source = PostgreSQLSource(
    name="market_context_source",
    table="offline.market_context",
    timestamp_field="event_timestamp",
    created_timestamp_column="created_at",
    description="Market context per city and date: RBI repo rate (public), home-loan rate, price index, inventory.",
    owner="data-platform@leadscore",
    tags={"origin": "public-data"},
)
