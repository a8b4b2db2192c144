"""The event-value property through a real stream worker and the stores (issue #17).

Hypothesis generates events of every topic, half with arbitrary values (NUL characters, lone surrogates, huge and
non-finite numbers, times from any year, unknown fields, wrong types, other tenants), half with values inside
their ranges; every third goes without a message key, and each gets a lead of its own with scoring and text
consent. All are produced at once to the real broker in front of one worker. Each event must then either have
landed, with every value in PostgreSQL and Redis inside its range, or be on `lead.deadletter` with the reason
`parse` gives; never both, never neither. An event sent after them all must land too: no stall.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from infra.config import Settings
from pipelines.demo_stream import stop_worker
from pipelines.streams.aggregate import FEATURE_COLUMNS
from pipelines.streams.parse import MAX_TEXT, BadEvent, parse
from pipelines.streams.records import TOPIC_DEADLETTER, TOPIC_MESSAGES, TOPIC_WEB
from pipelines.streams.sinks import wait_for
from tests.event_strategies import LEAD, REASONS, events
from tests.integration.test_streams import _log, _start_worker

pytestmark = [pytest.mark.integration, pytest.mark.slow]
EVENTS = 400
WORKER_REASONS = REASONS | {"unknown_lead", "store_refused"}


def _generate(now: datetime) -> list[tuple[str, dict]]:
    cases: list[tuple[str, dict]] = []

    @hypothesis_settings(max_examples=EVENTS, database=None, derandomize=True, deadline=None,
                         phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(st.one_of(events(now), events(now, fair=True)))
    def collect(case: tuple[str, dict]) -> None:
        cases.append(case)

    collect()
    return cases


def _own_lead(i: int, topic: str, body: dict, run: str) -> tuple[str, bytes | None, bytes] | None:
    """The event with a lead (and event id) of its own where it kept the generated ones; (topic, key, value), or
    None for a body JSON cannot write. Every third event goes without a key."""
    lead = f"PV-{run}-{i:04d}"
    body = {k: (lead if v == LEAD and k in ("lead_id", "event_id") else v) for k, v in body.items()}
    try:
        value = json.dumps(body).encode()
    except (ValueError, OverflowError):
        return None
    key = body["lead_id"].encode("utf-8", "surrogatepass") if isinstance(body.get("lead_id"), str) else None
    return topic, (None if i % 3 == 0 else key), value


@pytest.fixture(scope="module")
def worker(stack_env_vars: dict[str, str], settings: Settings, applied_store) -> Iterator:  # noqa: ANN001
    from pipelines.streams.topics import ensure_topics

    ensure_topics(settings)
    env = {**stack_env_vars, "LEADSCORE_STREAM_GROUP": f"leadscore-streams-values-{os.getpid()}"}
    proc = _start_worker(env)
    proc.args_env = env  # type: ignore[attr-defined]
    yield proc
    stop_worker(proc)


async def _produce_raw(bootstrap: str, items: list[tuple[str, bytes | None, bytes]]) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_request_size=4 << 20)
    await producer.start()
    try:
        await asyncio.gather(*[await producer.send(topic, value, key=key) for topic, key, value in items])
    finally:
        await producer.stop()


async def _dead_letters(settings: Settings, payloads: set[str], timeout_s: float = 60) -> dict[str, dict]:
    """Dead letters whose payload is one of `payloads`, read until every expected one is there (or `timeout_s`)."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(TOPIC_DEADLETTER, bootstrap_servers=settings.kafka_bootstrap,
                                auto_offset_reset="earliest", group_id=None, max_partition_fetch_bytes=4 << 20)
    await consumer.start()
    found: dict[str, dict] = {}
    try:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while len(found) < len(payloads) and asyncio.get_running_loop().time() < deadline:
            for msgs in (await consumer.getmany(timeout_ms=1000)).values():
                for m in msgs:
                    letter = json.loads(m.value)
                    if letter["payload"] in payloads:
                        found[letter["payload"]] = letter
    finally:
        await consumer.stop()
    return found


def _grant(settings: Settings, leads: list[str]) -> None:
    import psycopg

    with psycopg.connect(settings.pg_dsn()) as conn, conn.cursor() as cur:
        cur.executemany("INSERT INTO compliance.consent (lead_id, purpose, granted, source) VALUES (%s, %s, true, "
                        "'test') ON CONFLICT (lead_id, purpose) DO UPDATE SET granted = true",
                        [(lead, purpose) for lead in leads for purpose in ("scoring", "text_analysis")])


def _stored(settings: Settings, leads: list[str]) -> tuple[dict[str, dict], dict[str, str]]:
    """(offline engagement row by lead, stored message text by event id) of `leads`."""
    import psycopg

    with psycopg.connect(settings.pg_dsn()) as conn:
        cur = conn.execute("SELECT DISTINCT ON (lead_id) * FROM offline.lead_engagement WHERE lead_id = ANY(%s) "
                           "ORDER BY lead_id, event_timestamp DESC", (leads,))
        names = [d.name for d in cur.description]
        rows = {r[0]: dict(zip(names, r, strict=True)) for r in cur.fetchall()}
        texts = dict(conn.execute("SELECT event_id, text FROM text_store.messages WHERE lead_id = ANY(%s)",
                                  (leads,)).fetchall())
    return rows, texts


def _in_range(column: str, value: object, now: datetime) -> bool:
    if value is None:
        return True
    if isinstance(value, datetime):
        return now - timedelta(days=731) <= value <= now + timedelta(minutes=10)
    number = float(value)  # type: ignore[arg-type]
    if column in ("first_touch_ts", "last_event_ts"):
        return (now - timedelta(days=731)).timestamp() <= number <= (now + timedelta(minutes=10)).timestamp()
    bound = 86_400.0 if column.startswith(("time_on_site", "whatsapp_reply_latency")) else 1.0  # one event a lead
    return math.isfinite(number) and 0 <= number <= bound


def test_every_generated_event_lands_within_its_ranges_or_is_a_dead_letter(settings: Settings, worker,  # noqa: ANN001
                                                                        applied_store) -> None:  # noqa: ANN001
    from pipelines.online import OnlineReader

    now, run = datetime.now(UTC), uuid.uuid4().hex[:8]
    items = [x for i, (topic, body) in enumerate(_generate(now)) if (x := _own_lead(i, topic, body, run))]
    leads = [f"PV-{run}-{i:04d}" for i in range(EVENTS)]
    last = f"PV-{run}-sentinel"
    _grant(settings, [*leads, last])
    expected: dict[str, tuple[str, object]] = {}  # payload -> (what should happen, the parsed event)
    for topic, key, value in items:
        try:
            event = parse(topic, key, value, datetime.now(UTC))
            expected[value.decode()] = ("land" if event.lead_id in leads else "unknown_lead", event)
        except BadEvent as exc:
            expected[value.decode()] = (exc.reason, None)
    sentinel = {"event_id": last, "lead_id": last, "event_time": datetime.now(UTC).isoformat(), "action": "search"}
    asyncio.run(_produce_raw(settings.kafka_bootstrap, [*items, (TOPIC_WEB, last.encode(),
                                                                 json.dumps(sentinel).encode())]))

    # no stall: the event sent after all of them lands (its lead's row has its time) while the worker runs
    def sentinel_landed() -> bool:
        row = _stored(settings, [last])[0].get(last)
        return row is not None and row["event_timestamp"] >= datetime.fromisoformat(sentinel["event_time"])

    assert wait_for(sentinel_landed, 90), f"the worker stalled behind the generated events:\n{_log(worker.args_env)}"
    assert worker.poll() is None, _log(worker.args_env)

    refused = {p for p, (outcome, _) in expected.items() if outcome != "land"}
    dead = asyncio.run(_dead_letters(settings, set(expected)))
    missing = refused - set(dead)
    assert not missing, f"{len(missing)} bad events neither landed nor dead-lettered, e.g. {sorted(missing)[:3]}"
    wrongly = set(dead) - refused
    assert not wrongly, [dead[p] for p in sorted(wrongly)[:3]]
    for payload, letter in dead.items():
        assert letter["reason"] in WORKER_REASONS and letter["detail"], letter
        assert letter["reason"] == expected[payload][0], (letter, expected[payload][0])

    landed = {event.lead_id: event for outcome, event in expected.values() if outcome == "land"}
    rows, texts = _stored(settings, list(landed))
    assert set(rows) == set(landed), f"leads whose event neither landed nor was dead-lettered: " \
                                     f"{sorted(set(landed) - set(rows))[:5]}"
    online = {r["lead_id"]: r for r in OnlineReader(applied_store, "lead_scoring_v1").read(list(landed))}
    for lead, event in landed.items():
        assert rows[lead]["event_timestamp"] == event.event_time, (lead, rows[lead]["event_timestamp"])
        for column in FEATURE_COLUMNS:
            assert _in_range(column, rows[lead][column], now), ("offline", lead, column, rows[lead][column])
            value = online[lead].get(column)
            assert _in_range(column, value, now), ("online", lead, column, value)
        text = getattr(event, "text", None)
        if text:
            assert texts[event.event_id] == text and "\x00" not in text and len(text) <= MAX_TEXT
    outcomes = sorted({o for o, _ in expected.values()})
    print(f"{len(items)} generated events: {sum(o == 'land' for o, _ in expected.values())} landed, "
          f"{len(dead)} dead-lettered ({', '.join(outcomes)})")
    assert sum(o == "land" for o, _ in expected.values()) >= 100 and len(dead) >= 100, "too few of one kind to tell"
    assert any(t == TOPIC_MESSAGES for t, _, _ in items)
