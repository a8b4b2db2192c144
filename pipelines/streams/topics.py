"""Create the stream topics up front, all with one partition count (Faust refuses mismatched co-partitioning)."""

from __future__ import annotations

import asyncio

from infra.config import Settings
from pipelines.streams.records import SOURCE_TOPICS, TOPIC_DEADLETTER


def partitions(settings: Settings) -> int:
    return int(settings.env.get("LEADSCORE_STREAM_PARTITIONS", "6"))


async def _ensure(bootstrap: str, names: list[str], count: int, retention_ms: int | None = None,
                  security: dict | None = None) -> list[str]:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **(security or {}))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in names if n not in existing]
        if missing:
            configs = {"retention.ms": str(retention_ms)} if retention_ms else {}
            await admin.create_topics([NewTopic(n, num_partitions=count, replication_factor=1, topic_configs=configs)
                                       for n in missing])
        described = await admin.describe_topics(names)
        wrong = [d["topic"] for d in described if len(d.get("partitions", [])) != count]
        if wrong:
            raise RuntimeError(f"topics {wrong} exist with a partition count other than {count}: recreate them "
                               "or set LEADSCORE_STREAM_PARTITIONS to match")
        return missing
    finally:
        await admin.close()


def ensure_topics(settings: Settings) -> list[str]:
    """Create missing source and dead-letter topics, keeping events `topic_retention_days` (the raw events of an
    erased lead remain that long: its erasure receipt says until when); return the names created."""
    retention_ms = settings.privacy().topic_retention_days * 86_400_000
    return asyncio.run(_ensure(settings.kafka_bootstrap, [*SOURCE_TOPICS, TOPIC_DEADLETTER], partitions(settings),
                               retention_ms, settings.kafka_options()))


async def _retention_ms(bootstrap: str, names: list[str], security: dict | None = None) -> dict[str, int | None]:
    from aiokafka.admin import AIOKafkaAdminClient, ConfigResource, ConfigResourceType

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **(security or {}))
    await admin.start()
    try:
        found: dict[str, int | None] = dict.fromkeys(names)
        for response in await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, n) for n in names]):
            for _code, _msg, _type, topic, entries in response.resources:
                for entry in entries:
                    if entry[0] == "retention.ms" and entry[1] not in (None, ""):
                        found[topic] = int(entry[1])
        return found
    finally:
        await admin.close()


def topic_retention_ms(settings: Settings) -> dict[str, int | None]:
    """The source topics' retention.ms as the broker reports it (None where it does not say)."""
    return asyncio.run(_retention_ms(settings.kafka_bootstrap, list(SOURCE_TOPICS), settings.kafka_options()))
