"""Independent probes of every store (none of them uses compliance/), and the CLI, for the privacy tests."""

from __future__ import annotations

import asyncio

import pandas as pd
import psycopg

from infra.config import Settings
from tests.conftest import leadscore

MODEL = "lead-scorer-privacy-it"
SYSTEM = ("pg_catalog", "information_schema", "pg_toast")


def pg_rows(settings: Settings, lead: str) -> dict[str, int]:
    """table -> rows whose lead_id is `lead`, over every table with a lead_id column in the product's database."""
    with psycopg.connect(settings.pg_dsn()) as conn:
        tables = conn.execute("SELECT table_schema, table_name FROM information_schema.columns JOIN "
                              "information_schema.tables USING (table_schema, table_name) WHERE column_name = "
                              "'lead_id' AND table_type = 'BASE TABLE' AND table_schema <> ALL(%s)",
                              (list(SYSTEM),)).fetchall()
        return {f"{s}.{t}": conn.execute(f'SELECT count(*) FROM "{s}"."{t}" WHERE lead_id = %s',
                                         (lead,)).fetchone()[0] for s, t in tables}


def pg_mentions(settings: Settings, lead: str, database: str | None = None) -> dict[str, int]:
    """table.column -> rows whose text or JSON contains `lead` anywhere, over every table of a database."""
    out = {}
    with psycopg.connect(settings.pg_dsn(database)) as conn:
        cols = conn.execute("SELECT c.table_schema, c.table_name, c.column_name FROM information_schema.columns c "
                            "JOIN information_schema.tables t USING (table_schema, table_name) WHERE t.table_type = "
                            "'BASE TABLE' AND c.table_schema <> ALL(%s) AND c.data_type IN ('text', "
                            "'character varying', 'jsonb', 'json')", (list(SYSTEM),)).fetchall()
        for s, t, c in cols:
            n = conn.execute(f'SELECT count(*) FROM "{s}"."{t}" WHERE strpos("{c}"::text, %s) > 0',
                             (lead,)).fetchone()[0]
            if n:
                out[f"{s}.{t}.{c}"] = n
    return out


def redis_keys(settings: Settings, lead: str) -> list[bytes]:
    import redis

    client = redis.Redis.from_url(settings.redis_url())
    try:
        return [k for k in client.scan_iter(count=1000) if lead.encode() in k]
    finally:
        client.close()


def artifact_files(settings: Settings, lead: str) -> list[str]:
    """MLflow artifact files (on disk, under the server's artifact root) that hold the id, parquet read as tables."""
    found = []
    for path in (settings.state_dir / "mlflow" / "artifacts").rglob("*"):
        if not path.is_file():
            continue
        if path.suffix == ".parquet":
            frame = pd.read_parquet(path)
            if any(frame[c].astype(str).str.contains(lead, regex=False).any() for c in frame.columns):
                found.append(str(path))
        elif lead.encode() in path.read_bytes():
            found.append(str(path))
    return found


def changelog_state(settings: Settings, lead: str) -> dict[str, bool]:
    """changelog topic -> whether the lead's latest record there is live state (not a tombstone)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    async def read() -> dict[str, bool]:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
        await admin.start()
        topics = [t for t in await admin.list_topics() if t.endswith("-changelog")]
        await admin.close()
        consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None,
                                    enable_auto_commit=False)
        await consumer.start()
        try:
            parts = [TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()]
            consumer.assign(parts)
            await consumer.seek_to_beginning(*parts)
            ends = await consumer.end_offsets(parts)
            state: dict[str, bool] = {}
            for tp in parts:
                while await consumer.position(tp) < ends[tp]:
                    for rec in (await consumer.getmany(tp, timeout_ms=1000)).get(tp, []):
                        if rec.key == lead.encode():
                            state[tp.topic] = rec.value is not None
            return state
        finally:
            await consumer.stop()

    return asyncio.run(read())


def cli(world: dict, *args: str):  # noqa: ANN201 - CompletedProcess
    return leadscore(list(args), world["env"], timeout=300)


def get(url: str, path: str, key: str):  # noqa: ANN202 - httpx.Response
    import httpx

    return httpx.get(f"{url}{path}", headers={"Authorization": f"Bearer {key}"}, timeout=60)
