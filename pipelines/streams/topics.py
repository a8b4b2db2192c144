"""Create the stream topics up front, all with one partition count (Faust refuses mismatched co-partitioning)."""

from __future__ import annotations

import asyncio

from infra.config import Settings
from pipelines.streams.records import SOURCE_TOPICS, TOPIC_DEADLETTER


def partitions(settings: Settings) -> int:
    return int(settings.env.get("LEADSCORE_STREAM_PARTITIONS", "6"))


async def _ensure(bootstrap: str, names: list[str], count: int) -> list[str]:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in names if n not in existing]
        if missing:
            await admin.create_topics([NewTopic(n, num_partitions=count, replication_factor=1) for n in missing])
        described = await admin.describe_topics(names)
        wrong = [d["topic"] for d in described if len(d.get("partitions", [])) != count]
        if wrong:
            raise RuntimeError(f"topics {wrong} exist with a partition count other than {count}: recreate them "
                               "or set LEADSCORE_STREAM_PARTITIONS to match")
        return missing
    finally:
        await admin.close()


def ensure_topics(settings: Settings) -> list[str]:
    """Create missing source and dead-letter topics; return the names created."""
    return asyncio.run(_ensure(settings.kafka_bootstrap, [*SOURCE_TOPICS, TOPIC_DEADLETTER], partitions(settings)))
