"""Helpers of the stream integration tests: events to send, a plain producer, the rows the stores should hold, and
the dead letters to read back."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime, timedelta

from infra.config import Settings
from pipelines.streams.aggregate import FEATURE_COLUMNS, apply_event, feature_row, new_state
from pipelines.streams.records import (
    TOPIC_DEADLETTER,
    TOPIC_EMAIL,
    TOPIC_MESSAGES,
    TOPIC_WEB,
    EmailEvent,
    MessageEvent,
    WebEvent,
)


def events_for(leads: list[str], per_lead: int, start: datetime) -> list[tuple[str, object]]:
    out = []
    for i in range(per_lead):
        for j, lead in enumerate(leads):
            at = start + timedelta(seconds=30 * i + j)
            kind = (i + j) % 4
            if kind == 0:
                out.append((TOPIC_WEB, WebEvent(event_id=str(uuid.uuid4()), lead_id=lead, event_time=at,
                                                action="listing_view")))
            elif kind == 1:
                out.append((TOPIC_WEB, WebEvent(event_id=str(uuid.uuid4()), lead_id=lead, event_time=at,
                                                action="session", duration_s=60.0 + i)))
            elif kind == 2:
                out.append((TOPIC_EMAIL, EmailEvent(event_id=str(uuid.uuid4()), lead_id=lead, event_time=at,
                                                    action="opened")))
            else:
                out.append((TOPIC_MESSAGES, MessageEvent(event_id=str(uuid.uuid4()), lead_id=lead, event_time=at,
                                                         channel="whatsapp", direction="inbound",
                                                         text="Site visit Sunday chalega?")))
    return out


async def produce(bootstrap: str, items: list[tuple[str, object]], raw: list[tuple[str, bytes, bytes]] = ()) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    try:
        await producer.start()
        futures = [await producer.send(topic, event.dumps(), key=event.lead_id.encode()) for topic, event in items]
        futures += [await producer.send(topic, value, key=key) for topic, key, value in raw]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def expected_rows(items: list[tuple[str, object]]) -> dict[str, dict]:
    states: dict[str, dict] = {}
    for topic, event in items:
        apply_event(states.setdefault(event.lead_id, new_state()), topic, event)
    return {lead: feature_row(state) for lead, state in states.items() if state["last"] is not None}


def offline_latest(settings: Settings, leads: list[str]) -> dict[str, dict]:
    import psycopg

    with psycopg.connect(settings.pg_dsn()) as conn:
        cur = conn.execute("SELECT DISTINCT ON (lead_id) * FROM offline.lead_engagement WHERE lead_id = ANY(%s) "
                           "ORDER BY lead_id, event_timestamp DESC", (leads,))
        names = [d.name for d in cur.description]
        return {r[0]: dict(zip(names, r, strict=True)) for r in cur.fetchall()}


def diff_rows(expected: dict[str, dict], got: dict[str, dict]) -> list[str]:
    """What differs, as short lines (empty when the stores hold exactly the expected aggregates)."""
    out = [f"leads missing: {sorted(set(expected) - set(got))}"] if set(got) != set(expected) else []
    for lead, row in expected.items():
        for col in ("event_timestamp", *FEATURE_COLUMNS):
            if lead not in got:
                break
            a, b = row[col], got[lead][col]
            if col == "event_timestamp":
                if a != b:
                    out.append(f"{lead} {col}: expected {a} got {b}")
            elif (a is None) != (b is None) or (a is not None and abs(float(a) - float(b)) > 1e-6):
                out.append(f"{lead} {col}: expected {a} got {b}")
    return out


def rows_match(expected: dict[str, dict], got: dict[str, dict]) -> bool:
    return not diff_rows(expected, got)


async def read_dead(settings: Settings, marker: str, expect: int) -> list[dict]:
    """The dead letters whose payload holds `marker`, once `expect` of them are there (30 s at most)."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(TOPIC_DEADLETTER, bootstrap_servers=settings.kafka_bootstrap,
                                auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    found: list[dict] = []
    try:
        for _ in range(30):
            got = await consumer.getmany(timeout_ms=1000)
            found += [json.loads(m.value) for msgs in got.values() for m in msgs]
            if sum(marker in d["payload"] for d in found) >= expect:
                break
    finally:
        await consumer.stop()
    return [d for d in found if marker in d["payload"]]
