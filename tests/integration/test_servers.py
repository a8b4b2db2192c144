"""Each server answers over a real connection and really is what it claims to be."""

from __future__ import annotations

import asyncio
import uuid

import numpy as np
import pytest

from infra.config import Settings

pytestmark = pytest.mark.integration


def test_postgres_has_pgvector_and_answers_nearest_neighbours(settings: Settings) -> None:
    import psycopg

    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(200, 16)).astype(np.float32)
    query = rng.normal(size=16).astype(np.float32)
    literal = lambda v: "[" + ",".join(f"{x:.6f}" for x in v) + "]"  # noqa: E731
    with psycopg.connect(settings.pg_dsn()) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        version = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()[0]
        assert version.startswith("0.8")
        conn.execute("CREATE TEMP TABLE items (id int PRIMARY KEY, embedding vector(16))")
        with conn.cursor().copy("COPY items (id, embedding) FROM STDIN") as copy:
            for i, v in enumerate(vectors):
                copy.write_row((i, literal(v)))
        conn.execute("CREATE INDEX ON items USING hnsw (embedding vector_l2_ops)")
        rows = conn.execute("SELECT id FROM items ORDER BY embedding <-> %s::vector LIMIT 5",
                            (literal(query),)).fetchall()
    expected = np.argsort(np.linalg.norm(vectors - query, axis=1))[:5]
    assert [r[0] for r in rows] == expected.tolist()


def test_postgres_refuses_a_wrong_password(settings: Settings) -> None:
    import psycopg

    bad = f"postgresql://{settings.pg_user}:wrong@{settings.pg_host}:{settings.postgres_port}/{settings.pg_db}"
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(bad, connect_timeout=3)


def test_redis_set_get_with_password_and_refuses_without(settings: Settings) -> None:
    import redis

    client = redis.Redis.from_url(settings.redis_url())
    key = f"test:{uuid.uuid4()}"
    client.set(key, "hello", ex=60)
    assert client.get(key) == b"hello"
    with pytest.raises(redis.exceptions.NoPermissionError):  # the pipelines' user: no CONFIG, FLUSHALL, KEYS
        client.config_get("appendonly")
    with pytest.raises(redis.exceptions.NoPermissionError):
        client.flushall()
    admin = redis.Redis.from_url(settings.redis_url("admin"))
    assert admin.config_get("appendonly")["appendonly"] == "yes"
    anonymous = redis.Redis(host=settings.redis_host, port=settings.redis_port)
    with pytest.raises(redis.AuthenticationError):
        anonymous.get(key)


def test_the_scoring_services_redis_user_only_reads_feature_keys(settings: Settings) -> None:
    import redis

    from pipelines.redis_codec import EntityKeyCodec

    feature_key = EntityKeyCodec("lead_id", "leadscore").key(f"it-acl-{uuid.uuid4()}")
    writer = redis.Redis.from_url(settings.redis_url())
    writer.hset(feature_key, mapping={"f": "1"})
    writer.set("it-acl-other", "x", ex=60)
    serving = redis.Redis.from_url(settings.redis_url("serving"))
    try:
        assert serving.hmget(feature_key, ["f"]) == [b"1"] and serving.ping()
        for denied in (lambda: serving.hset(feature_key, "f", "2"), lambda: serving.delete(feature_key),
                       lambda: serving.get("it-acl-other"), lambda: serving.config_get("*"),
                       lambda: serving.keys("*"), lambda: serving.flushall()):
            with pytest.raises(redis.exceptions.NoPermissionError):
                denied()
    finally:
        writer.delete(feature_key, "it-acl-other")


def test_broker_produces_and_consumes_with_aiokafka(settings: Settings) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    topic = f"test-{uuid.uuid4().hex[:8]}"
    sent = [f"event-{i}".encode() for i in range(50)]

    async def roundtrip() -> list[bytes]:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
        finally:
            await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
        await producer.start()
        try:
            for i, value in enumerate(sent):
                await producer.send_and_wait(topic, value, key=f"lead-{i % 5}".encode())
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka_bootstrap, group_id="test-group",
                                    auto_offset_reset="earliest", enable_auto_commit=False)
        await consumer.start()
        got: list[bytes] = []
        try:
            while len(got) < len(sent):
                batch = await consumer.getmany(timeout_ms=5000)
                if not batch:
                    break
                got += [m.value for msgs in batch.values() for m in msgs]
            await consumer.commit()
        finally:
            await consumer.stop()
        return got

    got = asyncio.run(roundtrip())
    assert sorted(got) == sorted(sent)


def test_mlflow_experiment_metric_registry_and_alias(settings: Settings) -> None:
    import mlflow
    from mlflow import MlflowClient

    class Constant(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):  # noqa: ANN001
            return [0.5] * len(model_input)

    mlflow.set_tracking_uri(settings.tracking_uri)
    client = MlflowClient(settings.tracking_uri)
    name = f"test-model-{uuid.uuid4().hex[:6]}"
    experiment_id = client.create_experiment(f"test-{uuid.uuid4().hex[:6]}")
    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_metric("roc_auc", 0.81)
        info = mlflow.pyfunc.log_model(name="model", python_model=Constant(), registered_model_name=name)
    assert client.get_run(run.info.run_id).data.metrics["roc_auc"] == pytest.approx(0.81)
    version = info.registered_model_version
    client.set_registered_model_alias(name, "champion", version)
    assert client.get_model_version_by_alias(name, "champion").version == str(version)
    loaded = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    assert list(loaded.predict(np.zeros((3, 2)))) == [0.5, 0.5, 0.5]


def test_prometheus_runs_our_config_and_rules_and_scrapes_registered_workers(settings: Settings) -> None:
    import json
    import time
    import urllib.request

    from infra.monitor_servers import register_target

    def get(path: str) -> dict:
        with urllib.request.urlopen(f"{settings.prometheus_url}{path}", timeout=5) as resp:  # noqa: S310
            return json.loads(resp.read())

    assert settings.prometheus_url.startswith("http://127.0.0.1:")
    groups = {g["name"] for g in get("/api/v1/rules")["data"]["groups"]}
    assert {"leadscore-model", "leadscore-serving", "leadscore-streams"} <= groups
    jobs = {t["labels"]["job"] for t in get("/api/v1/targets")["data"]["activeTargets"]}
    assert {"leadscore-serving", "leadscore-monitor"} <= jobs
    flags = get("/api/v1/status/flags")["data"]
    assert flags["storage.tsdb.path"].startswith(str(settings.state_dir.resolve() / "prometheus")) or \
        "/var/lib/leadscore/" in flags["storage.tsdb.path"]
    path = register_target(settings, "test-worker", 1, {"worker": "test"})  # file service discovery
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            found = [t for t in get("/api/v1/targets")["data"]["activeTargets"] if t["labels"].get("worker") == "test"]
            if found:
                break
            time.sleep(0.5)
        assert found and found[0]["labels"]["job"] == "leadscore-streams"
    finally:
        path.unlink()


def test_evidently_ui_answers_with_the_secret_and_refuses_writes_without(settings: Settings) -> None:
    import httpx

    assert httpx.get(f"{settings.evidently_url}/api/version", timeout=5).status_code == 200
    refused = httpx.post(f"{settings.evidently_url}/api/projects", json={"name": "x", "description": ""}, timeout=5)
    assert refused.status_code in (401, 403), refused.text
