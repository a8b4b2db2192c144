"""Every store the product writes a lead into, each able to count what it holds for some leads and to erase it.

- **PostgreSQL**: every table, in any schema, with a `lead_id` column, found from information_schema at each
  erasure (a table added later is not forgotten). Rows are deleted, except the records the law asks to keep:
  the prediction log and audit log (processing logs, Rule 8(3)) keep their rows with lead_id replaced by
  'tok_' + the token and no features, until their retention ends; the consent ledger and requests keep the token
  (proof of consent and of the request) with lead_id cleared.
- **Redis**: the lead's Feast online hash (one key per entity value holds every view's features).
- **Kafka**: the stream workers' table state, by a tombstone on every `*-lead_to_engagement-changelog` topic (a
  worker's table recovers from it); source topics cannot be edited: their events stay until the topics' retention
  ends, and the erasure list keeps a replay from bringing the lead back.
- **MLflow**: the artifacts that hold lead rows (held-out test rows, the re-ranker's split) of the runs the lineage
  names, rewritten without the lead. Input examples and logged datasets hold no lead rows at all.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from compliance.tokens import PREFIX
from infra.config import Settings

ROLE = "privacy"  # its own PostgreSQL login (infra/migrations/0021_privacy_role.sql)

# tables kept for their legal period with the lead pseudonymised: table -> SET clause ({token} is the lead's token)
PSEUDONYMISE = {
    "serving.prediction_log": "lead_id = 'tok_' || m.token, features = NULL",
    "compliance.audit_log": "lead_id = 'tok_' || m.token",
    "compliance.consent_ledger": "lead_id = NULL",
    "compliance.requests": "lead_id = NULL",
    "compliance.retention_notices": "lead_id = NULL",
}
# append-only tables (infra/migrations/0011_append_only.sql): only the erasure role may replace their lead_id
APPEND_ONLY = ("compliance.audit_log", "compliance.consent_ledger")
ERASURE_ROLE = "leadscore_erasure"
SYSTEM_SCHEMAS = ("pg_catalog", "information_schema", "pg_toast")
ROW_ARTIFACTS = ("holdout/test.parquet", "split/split.parquet")
CHANGELOG_SUFFIX = "-lead_to_engagement-changelog"


def lead_tables(conn) -> list[str]:  # noqa: ANN001 - psycopg connection
    """schema.table of every base table with a lead_id column."""
    rows = conn.execute(
        "SELECT c.table_schema, c.table_name FROM information_schema.columns c JOIN information_schema.tables t "
        "USING (table_schema, table_name) WHERE c.column_name = 'lead_id' AND t.table_type = 'BASE TABLE' "
        "AND c.table_schema <> ALL(%s) ORDER BY 1, 2", (list(SYSTEM_SCHEMAS),)).fetchall()
    return [f"{s}.{t}" for s, t in rows]


@dataclass
class PostgresTables:
    """Every lead-keyed table, counted and erased in one transaction."""

    settings: Settings
    tables: list[str] = field(default_factory=list)

    def count(self, lead_ids: Sequence[str]) -> dict[str, int]:
        import psycopg

        with psycopg.connect(self.settings.pg_dsn(role=ROLE)) as conn:
            self.tables = lead_tables(conn)
            return {f"postgres:{t}": conn.execute(f"SELECT count(*) FROM {_quoted(t)} WHERE lead_id = ANY(%s)",
                                                  (list(lead_ids),)).fetchone()[0] for t in self.tables}

    def erase(self, conn, lead_ids: Sequence[str], tokens: Sequence[str]) -> dict[str, str]:  # noqa: ANN001
        """Delete or pseudonymise in the caller's transaction; table -> what was done."""
        done = {}
        for table in lead_tables(conn):
            if table in PSEUDONYMISE:
                if table in APPEND_ONLY:  # history: changed only as the erasure role, and only its lead_id
                    conn.execute(f"SET LOCAL ROLE {ERASURE_ROLE}")
                conn.execute(f"UPDATE {_quoted(table)} t SET {PSEUDONYMISE[table]} FROM unnest(%s::text[], "
                             "%s::text[]) AS m(id, token) WHERE t.lead_id = m.id", (list(lead_ids), list(tokens)))
                if table in APPEND_ONLY:
                    conn.execute("RESET ROLE")
                done[f"postgres:{table}"] = "pseudonymised"
            else:
                conn.execute(f"DELETE FROM {_quoted(table)} WHERE lead_id = ANY(%s)", (list(lead_ids),))
                done[f"postgres:{table}"] = "deleted"
        return done


def _quoted(table: str) -> str:
    schema, name = table.split(".", 1)
    return f'"{schema}"."{name}"'


class RedisOnline:
    """The leads' Feast online hashes (project `leadscore`, join key lead_id)."""

    name = "redis:online"

    def __init__(self, settings: Settings, project: str = "leadscore") -> None:
        import redis

        from pipelines.redis_codec import EntityKeyCodec

        self.client = redis.Redis.from_url(settings.redis_url())
        self.codec = EntityKeyCodec("lead_id", project)

    def count(self, lead_ids: Sequence[str]) -> int:
        pipe = self.client.pipeline(transaction=False)
        for lead in lead_ids:
            pipe.exists(self.codec.key(lead))
        return int(sum(pipe.execute()))

    def erase(self, lead_ids: Sequence[str]) -> int:
        import contextlib

        import redis

        keys = [self.codec.key(lead) for lead in lead_ids]
        deleted = int(sum(self.client.delete(*keys[i:i + 1000]) for i in range(0, len(keys), 1000)))
        if deleted:  # the append-only file still holds the writes: Redis rewrites it from memory, in the background
            with contextlib.suppress(redis.ResponseError):  # a rewrite already running, or persistence off
                self.client.bgrewriteaof()
        return deleted

    def close(self) -> None:
        self.client.close()


class KafkaChangelogs:
    """The stream workers' table state: the latest record per lead on each table changelog topic."""

    name = "kafka:changelog"

    def __init__(self, settings: Settings) -> None:
        self.bootstrap = settings.kafka_bootstrap
        self.security = settings.kafka_options()  # KAFKA_SECURITY_PROTOCOL, SASL, TLS

    def count(self, lead_ids: Sequence[str]) -> int:
        """Leads whose latest changelog record (on any table changelog) is live state, read from the beginning."""
        return asyncio.run(self._count({lead.encode() for lead in lead_ids}))

    def erase(self, lead_ids: Sequence[str]) -> int:
        """A tombstone per lead on every changelog topic, acknowledged by the broker; the number sent."""
        return asyncio.run(self._tombstones([lead.encode() for lead in lead_ids]))

    async def _topics(self) -> list[str]:
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, **self.security)
        await admin.start()
        try:
            return sorted(t for t in await admin.list_topics() if t.endswith(CHANGELOG_SUFFIX))
        finally:
            await admin.close()

    async def _count(self, keys: set[bytes]) -> int:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        topics = await self._topics()
        if not topics:
            return 0
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, **self.security, enable_auto_commit=False,
                                    auto_offset_reset="earliest", group_id=None, fetch_max_bytes=16 * 1024 * 1024)
        await consumer.start()
        try:
            parts = [TopicPartition(t, p) for t in topics for p in (consumer.partitions_for_topic(t) or ())]
            if not parts:
                return 0
            consumer.assign(parts)
            await consumer.seek_to_beginning(*parts)
            ends = await consumer.end_offsets(parts)
            live: dict[tuple[str, bytes], bool] = {}
            pending = {tp for tp in parts if ends[tp] > 0}
            while pending:
                batch = await consumer.getmany(*pending, timeout_ms=1000)
                for tp, records in batch.items():
                    for rec in records:
                        if rec.key in keys:
                            live[(tp.topic, rec.key)] = rec.value is not None
                    if records and records[-1].offset + 1 >= ends[tp]:
                        pending.discard(tp)
                if not batch:
                    pending = {tp for tp in pending if await consumer.position(tp) < ends[tp]}
            return len({key for (_topic, key), is_live in live.items() if is_live})
        finally:
            await consumer.stop()

    async def _tombstones(self, keys: list[bytes]) -> int:
        from aiokafka import AIOKafkaProducer

        topics = await self._topics()
        if not topics or not keys:
            return 0
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", **self.security)
        await producer.start()
        try:
            futures = [await producer.send(topic, key=key, value=None) for topic in topics for key in keys]
            await asyncio.gather(*futures)
            return len(futures)
        finally:
            await producer.stop()


class MlflowRowArtifacts:
    """Parquet artifacts holding lead rows, in the runs whose lineage includes the leads."""

    name = "mlflow:artifacts"

    def __init__(self, settings: Settings, run_ids: Sequence[str]) -> None:
        import os

        os.environ.update(settings.mlflow_env())
        from mlflow import MlflowClient
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        client = MlflowClient(settings.tracking_uri)
        self.files: list[tuple[object, str]] = []  # (the run's artifact repository, path), listed once
        for run_id in run_ids:
            try:
                repo = get_artifact_repository(client.get_run(run_id).info.artifact_uri)
            except Exception:  # noqa: BLE001 - a deleted run holds nothing we can reach
                continue
            for folder in sorted({p.rsplit("/", 1)[0] for p in ROW_ARTIFACTS}):
                try:
                    listed = {a.path for a in repo.list_artifacts(folder)}
                except Exception:  # noqa: BLE001 - no such folder
                    continue
                self.files += [(repo, p) for p in ROW_ARTIFACTS if p in listed]

    def count(self, lead_ids: Sequence[str]) -> int:
        """Rows of these leads in the row artifacts (downloaded and read back)."""
        import pandas as pd

        wanted, total = set(lead_ids), 0
        with tempfile.TemporaryDirectory() as tmp:
            for i, (repo, path) in enumerate(self.files):
                Path(tmp, str(i)).mkdir()
                frame = pd.read_parquet(repo.download_artifacts(path, f"{tmp}/{i}"))
                if "lead_id" in frame.columns:
                    total += int(frame["lead_id"].astype(str).isin(wanted).sum())
        return total

    def erase(self, lead_ids: Sequence[str]) -> int:
        """Rewrite each row artifact without the leads; the number of artifacts rewritten."""
        import pandas as pd

        wanted, rewritten = set(lead_ids), 0
        with tempfile.TemporaryDirectory() as tmp:
            for i, (repo, path) in enumerate(self.files):
                Path(tmp, str(i)).mkdir()
                local = Path(repo.download_artifacts(path, f"{tmp}/{i}"))
                frame = pd.read_parquet(local)
                if "lead_id" not in frame.columns:
                    continue
                keep = ~frame["lead_id"].astype(str).isin(wanted)
                if keep.all():
                    continue
                frame[keep].to_parquet(local, index=False)
                repo.log_artifact(str(local), path.rsplit("/", 1)[0])
                rewritten += 1
        return rewritten


def is_pseudonym(lead_id: str) -> bool:
    return lead_id.startswith(PREFIX)
