"""Erasure and export speed, beside the bare per-store deletes measured in the same run.

A private stack on free ports (`leadscore infra up` in a temporary state directory, removed at the end) is filled
with `--leads` leads in every store the product writes, as the product writes them: demographics and engagement
rows, labels, consent through `compliance.consent.set_consent` (ledgered), messages with embeddings, text signals,
scored predictions with their features, a monitoring reference, Redis online hashes in Feast's layout, a stream
changelog topic, and an MLflow run whose held-out parquet holds 2,000 of them (with their lineage).

Measured:
- erase one lead (`compliance.erase.erase`, receipt, probes and all), `--singles` times: p50 and p99, beside the
  floor: the same stores' bare deletes for one lead (one DELETE per table in a transaction, one Redis DEL, one
  tombstone per changelog, the held-out parquet rewritten);
- erase 10,000 leads in one request, beside the same bare deletes for 10,000;
- export one lead (`compliance.export.export_lead`), `--singles` times: p50 and p99, beside a bare SELECT of the
  lead's rows from every table.
Aims (issue #15): one erase p99 < 1 s, 10,000 in one request < 60 s, one export p99 < 1 s.
Usage:
    python bench/privacy.py [--leads 30000] [--singles 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from infra.config import Settings  # noqa: E402
from tests.conftest import stack_env  # noqa: E402

LEADSCORE = Path(sys.executable).parent / "leadscore"
CHANGELOG = "bench-privacy-lead_to_engagement-changelog"


def fill(settings: Settings, n: int) -> tuple[list[str], str]:
    """n leads in every store; returns the ids and the MLflow run id holding 2,000 of them."""
    import os

    import pandas as pd
    import psycopg
    import redis

    from compliance.consent import set_consent
    from compliance.lineage import record_lineage
    from pipelines.redis_codec import EntityKeyCodec, encode_timestamp, encode_value, field_key

    ids = [f"BP{i:07d}" for i in range(n)]
    now = datetime.now(UTC)
    rng = np.random.default_rng(5)
    for purpose in ("scoring", "text_analysis"):
        set_consent(settings, ids, purpose, True, channel="crm_export", recorded_by="bench")
    vec = "[" + ",".join(["0.01"] * 384) + "]"
    with psycopg.connect(settings.pg_dsn()) as conn:
        with conn.cursor().copy("COPY offline.lead_demographics (lead_id, event_timestamp, city) FROM STDIN") as cp:
            for lead in ids:
                cp.write_row((lead, now - timedelta(days=3), "Pune"))
        with conn.cursor().copy("COPY offline.labels (dataset, lead_id, event_timestamp, label) FROM STDIN") as cp:
            for lead in ids:
                cp.write_row(("broker_leads", lead, now - timedelta(days=1), int(rng.random() < 0.3)))
        with conn.cursor().copy("COPY text_store.messages (event_id, lead_id, kind, direction, sent_at, text, "
                                "embedding) FROM STDIN") as cp:
            for lead in ids:
                cp.write_row((f"m-{lead}", lead, "whatsapp", "inbound", now - timedelta(days=2), "site visit?", vec))
        with conn.cursor().copy("COPY serving.text_signals (lead_id, signal, n_messages, reranker_version) "
                                "FROM STDIN") as cp:
            for lead in ids:
                cp.write_row((lead, 0.5, 1, "bench"))
        with conn.cursor().copy("COPY serving.prediction_log (at, endpoint, request_id, key_id, tenant, lead_id, "
                                "model_name, model_version, feature_service, score, tier, features) FROM STDIN") as cp:
            for i, lead in enumerate(ids):
                for k in range(3):
                    cp.write_row((now - timedelta(hours=k), "score", f"r{i}-{k}", "bench", "bench", lead, "bench",
                                  "1", "lead_scoring_v1", 0.4, "warm", json.dumps({"city": "Pune", "visits": k})))
        with conn.cursor().copy("COPY monitoring.reference_rows (model_name, run_id, part, lead_id, "
                                "event_timestamp, label, score, features) FROM STDIN") as cp:
            for lead in ids:
                cp.write_row(("bench", "bench-run", "train", lead, now, 0, 0.3, json.dumps({"city": "Pune"})))
    client = redis.Redis.from_url(settings.redis_url())
    codec, fields = EntityKeyCodec("lead_id", "leadscore"), field_key("lead_engagement", "visits_7d")
    pipe = client.pipeline(transaction=False)
    for lead in ids:
        pipe.hset(codec.key(lead), mapping={fields: encode_value("float", 3.0),
                                            b"_ts:lead_engagement": encode_timestamp(now.timestamp())})
    pipe.execute()
    client.close()
    asyncio.run(_changelog(settings.kafka_bootstrap, ids))
    os.environ.update(settings.mlflow_env())
    import mlflow

    mlflow.set_experiment("bench-privacy")
    with tempfile.TemporaryDirectory() as tmp, mlflow.start_run() as run:
        holdout = Path(tmp) / "test.parquet"
        pd.DataFrame({"lead_id": ids[:2000], "label": 0, "visits": 1.0}).to_parquet(holdout, index=False)
        mlflow.log_artifact(str(holdout), "holdout")
    record_lineage(settings, "bench", run.info.run_id, ids[:2000])
    return ids, run.info.run_id


async def _changelog(bootstrap: str, ids: list[str]) -> None:
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(CHANGELOG, num_partitions=6, replication_factor=1)])
    await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20)
    await producer.start()
    try:
        futures = [await producer.send(CHANGELOG, key=lead.encode(), value=b'{"n":1}') for lead in ids]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def bare_delete(settings: Settings, ids: list[str], run_id: str) -> float:
    """The floor: each store's own delete of `ids`, nothing counted, signed or probed."""
    import os

    import pandas as pd
    import psycopg
    import redis
    from mlflow import MlflowClient

    from compliance.stores import lead_tables
    from pipelines.redis_codec import EntityKeyCodec

    started = time.perf_counter()
    with psycopg.connect(settings.pg_dsn()) as conn:
        for table in lead_tables(conn):
            schema, name = table.split(".", 1)
            conn.execute(f'DELETE FROM "{schema}"."{name}" WHERE lead_id = ANY(%s)', (ids,))
    client = redis.Redis.from_url(settings.redis_url())
    codec = EntityKeyCodec("lead_id", "leadscore")
    client.delete(*[codec.key(lead) for lead in ids])
    client.close()
    asyncio.run(_tombstones(settings.kafka_bootstrap, ids))
    os.environ.update(settings.mlflow_env())
    mlflow_client = MlflowClient(settings.tracking_uri)
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(mlflow_client.download_artifacts(run_id, "holdout/test.parquet", tmp))
        frame = pd.read_parquet(local)
        frame[~frame["lead_id"].isin(set(ids))].to_parquet(local, index=False)
        mlflow_client.log_artifact(run_id, str(local), "holdout")
    return time.perf_counter() - started


async def _tombstones(bootstrap: str, ids: list[str]) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await asyncio.gather(*[await producer.send(CHANGELOG, key=lead.encode(), value=None) for lead in ids])
    finally:
        await producer.stop()


def bare_select(settings: Settings, lead: str) -> float:
    import psycopg

    from compliance.stores import lead_tables

    started = time.perf_counter()
    with psycopg.connect(settings.pg_dsn()) as conn:
        for table in lead_tables(conn):
            schema, name = table.split(".", 1)
            conn.execute(f'SELECT * FROM "{schema}"."{name}" WHERE lead_id = %s', (lead,)).fetchall()
    return time.perf_counter() - started


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=30_000)
    parser.add_argument("--singles", type=int, default=50)
    args = parser.parse_args()
    import os

    with tempfile.TemporaryDirectory() as tmp:
        env = stack_env(Path(tmp) / "state")
        subprocess.run([str(LEADSCORE), "infra", "up"], env=env, check=True, capture_output=True)
        try:
            for key in [k for k in os.environ if k.startswith(("LEADSCORE_", "MLFLOW_"))]:
                del os.environ[key]
            os.environ.update(env)
            settings = Settings.load(env)
            run(settings, args)
        finally:
            subprocess.run([str(LEADSCORE), "infra", "down", "--purge"], env=env, capture_output=True)


def run(settings: Settings, args: argparse.Namespace) -> None:
    from compliance.erase import erase
    from compliance.export import export_lead

    clock = time.perf_counter()
    ids, run_id = fill(settings, args.leads)
    print(f"filled {len(ids):,} leads in every store in {time.perf_counter() - clock:.0f} s")
    singles = args.singles
    # the held-out parquet holds ids[:2000]: single erasures take leads from it, so each rewrites the artifact
    erase_s = [erase(settings, [lead], "bench").seconds for lead in ids[:singles]]
    floor_s = [bare_delete(settings, [lead], run_id) for lead in ids[singles:2 * singles]]
    export_s, select_s = [], []
    for lead in ids[2 * singles:3 * singles]:
        started = time.perf_counter()
        export_lead(settings, lead, "bench")
        export_s.append(time.perf_counter() - started)
        select_s.append(bare_select(settings, lead))
    batch = ids[3 * singles:3 * singles + 10_000]
    done = erase(settings, batch, "bench")
    floor_batch = bare_delete(settings, ids[3 * singles + 10_000:3 * singles + 20_000], run_id)
    assert done.complete, done.receipt["stores"]
    rows = [("erase one lead p50", pct(erase_s, 50), pct(floor_s, 50), None),
            ("erase one lead p99", pct(erase_s, 99), pct(floor_s, 99), 1.0),
            ("erase 10,000 leads in one request", done.seconds, floor_batch, 60.0),
            ("export one lead p50", pct(export_s, 50), pct(select_s, 50), None),
            ("export one lead p99", pct(export_s, 99), pct(select_s, 99), 1.0)]
    print(f"{'measure':36s} {'seconds':>9s} {'floor s':>9s} {'ratio':>7s}  aim")
    for name, value, floor, aim in rows:
        verdict = "" if aim is None else (f"< {aim:g} s: " + ("met" if value < aim else "MISSED"))
        print(f"{name:36s} {value:9.3f} {floor:9.3f} {value / floor:6.1f}x  {verdict}")


if __name__ == "__main__":
    main()
