"""The Faust app: one agent folds every lead event into the `lead_to_engagement` table and lands the results.

Built by `create_app(settings)` (nothing happens at import). Scale out by starting more workers
(`leadscore stream worker`): they share the consumer group `leadscore-streams` and split the partitions.

Per batch (up to `batch_size` events or `flush_s` seconds): parse each message into its topic's record, send bad
ones to `lead.deadletter` with the reason and the original bytes, drop duplicates by event id, update each lead's
state once, then write every changed lead's row offline (PostgreSQL) and online (Redis, leads with scoring consent),
labels for conversions, and message text. Only then does the loop move on, which acknowledges the batch: offsets
are committed after both stores accepted it (at-least-once; the writes are idempotent).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from datetime import UTC, datetime

import faust

from infra.config import Settings
from pipelines.streams import metrics
from pipelines.streams.aggregate import apply_event, feature_row, new_state
from pipelines.streams.parse import BadEvent, parse
from pipelines.streams.records import (
    SOURCE_TOPICS,
    TOPIC_CALLS,
    TOPIC_CRM,
    TOPIC_DEADLETTER,
    TOPIC_MESSAGES,
)
from pipelines.streams.sinks import LABEL_OF_STATUS, Batch, StoreSink

log = logging.getLogger("leadscore.streams")
APP_ID = "leadscore-streams"


def create_app(settings: Settings, batch_size: int = 5000, flush_s: float = 0.1) -> faust.App:
    """The stream app for these servers."""
    partitions = int(settings.env.get("LEADSCORE_STREAM_PARTITIONS", "6"))
    app = faust.App(
        APP_ID, broker=f"kafka://{settings.kafka_bootstrap}", store="memory://", topic_partitions=partitions,
        web_enabled=False, processing_guarantee="at_least_once", consumer_auto_offset_reset="earliest",
        broker_commit_every=batch_size, broker_commit_interval=1.0, producer_acks=-1,
        table_standby_replicas=0, topic_disable_leader=True,
        # a crashed worker's partitions move to the survivors after this long (Faust's default is 60 s)
        broker_session_timeout=float(settings.env.get("LEADSCORE_STREAM_SESSION_TIMEOUT", "10")),
        broker_heartbeat_interval=1.0,
    )
    source = app.topic(*SOURCE_TOPICS, key_type=bytes, value_type=bytes, key_serializer="raw",
                       value_serializer="raw", partitions=partitions)
    deadletter = app.topic(TOPIC_DEADLETTER, key_type=bytes, value_type=bytes, key_serializer="raw",
                           value_serializer="raw", partitions=partitions)
    # keyed by lead id; the default partitioner puts a lead's changelog on its events' partition
    lead_to_engagement = app.Table("lead_to_engagement", default=None, partitions=partitions, key_type=bytes,
                                   use_partitioner=True)  # keys raw bytes, values JSON (the app defaults)
    # opened before the worker starts: the agent must be iterating its stream from the first event it is handed
    state = {"sink": StoreSink(settings)}

    changelog = lead_to_engagement.changelog_topic.get_topic_name()

    @app.agent(source)
    async def aggregate_lead_events(stream):  # noqa: ANN001
        loop = asyncio.get_running_loop()
        sink: StoreSink = state["sink"]
        table = lead_to_engagement.data  # the table's store: we write its changelog ourselves, in bulk (below)
        async for events in stream.take_events(batch_size, within=flush_s):
            started = time.monotonic()
            batch, dead, parsed, touched, partition_of = Batch(), [], [], {}, {}
            per_topic = Counter()
            now = datetime.now(UTC)
            for ev in events:
                msg = ev.message
                per_topic[msg.topic] += 1
                try:
                    parsed.append((msg, parse(msg.topic, msg.key, msg.value, now)))
                except BadEvent as exc:
                    dead.append((msg, exc.reason, str(exc)))
            if any(e.lead_id not in sink.consent.known for _, e in parsed):
                # a lead may have been ingested seconds ago: look again before refusing
                await loop.run_in_executor(None, sink.consent.refresh)
            duplicates = 0
            for msg, event in parsed:
                if event.lead_id not in sink.consent.known:
                    dead.append((msg, "unknown_lead", f"lead {event.lead_id!r} has no consent on record"))
                    continue
                topic, key = msg.topic, event.lead_id.encode()
                lead_state = touched.get(key)
                if lead_state is None:
                    lead_state = touched[key] = table.get(key) or new_state()
                partition_of[key] = msg.partition
                # a duplicate still rewrites the lead's current row (touched): after a crash the changelog can be
                # ahead of the stores, and the replayed duplicates are what brings the stores level again
                if not apply_event(lead_state, topic, event):
                    duplicates += 1
                    continue
                if topic == TOPIC_CRM and event.status in LABEL_OF_STATUS:
                    batch.labels.append((event.lead_id, event.event_time, LABEL_OF_STATUS[event.status]))
                elif topic in (TOPIC_MESSAGES, TOPIC_CALLS):
                    text = event.text if topic == TOPIC_MESSAGES else event.notes
                    if text:
                        kind = event.channel if topic == TOPIC_MESSAGES else "call_note"
                        batch.messages.append((event.event_id, event.lead_id, kind, event.direction,
                                               event.event_time, text))
            for key, lead_state in touched.items():
                if lead_state["last"] is not None:
                    batch.rows[key.decode()] = feature_row(lead_state)
            await _send_dead(app, deadletter, dead)
            counts = await _write_with_retry(loop, sink, batch)
            # then the changelog (after the stores: a replay re-derives the rows), every message acknowledged by
            # the broker before this batch is acknowledged and so may be committed. Faust's own table writes go
            # through a buffer whose flush() gives up after 0.1 s without a send, which let a crash lose state.
            futures = [await app.producer.send(changelog, key, json.dumps(lead_state).encode(), partition_of[key],
                                               None, None) for key, lead_state in touched.items()]
            for key, lead_state in touched.items():
                table[key] = lead_state
            await asyncio.gather(*futures)
            done = time.time()
            for _, event in parsed:
                metrics.FRESHNESS.observe(max(0.0, done - event.event_time.timestamp()))
            for topic, n in per_topic.items():
                metrics.EVENTS_IN.labels(topic).inc(n)
            for sink_name, n in counts.items():
                metrics.ROWS_OUT.labels(sink_name).inc(n)
            metrics.DUPLICATES.inc(duplicates)
            metrics.EVENTS_LANDED.inc(len(events))
            metrics.BATCH_SIZE.observe(len(events))
            metrics.BATCH_SECONDS.observe(time.monotonic() - started)
            _record_lag(app, events)

    @app.timer(interval=5.0)
    async def refresh_consent() -> None:
        if state["sink"] is not None:
            await asyncio.get_running_loop().run_in_executor(None, state["sink"].consent.refresh)

    app.aggregate_lead_events = aggregate_lead_events  # type: ignore[attr-defined]
    return app


async def _write_with_retry(loop, sink: StoreSink, batch: Batch) -> dict[str, int]:  # noqa: ANN001
    """Land the batch; while a store is down, retry with back-off (the batch stays unacknowledged: nothing lost)."""
    delay = 0.5
    while True:
        try:
            return await loop.run_in_executor(None, sink.write, batch)
        except Exception as exc:  # noqa: BLE001 - any store failure: log, reconnect, retry
            metrics.SINK_ERRORS.inc()
            log.error("writing the batch failed (%s); retrying in %.1f s", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
            await loop.run_in_executor(None, sink.reconnect)


async def _send_dead(app: faust.App, topic, dead: list) -> None:  # noqa: ANN001
    """Dead-letter every bad event with its reason and original payload; wait until the broker has them."""
    futures = []
    for msg, reason, detail in dead:
        body = json.dumps({"reason": reason, "detail": detail, "source_topic": msg.topic, "partition": msg.partition,
                           "offset": msg.offset, "payload": (msg.value or b"").decode("utf-8", errors="replace"),
                           "at": datetime.now(UTC).isoformat()}).encode()
        futures.append(await app.producer.send(topic.get_topic_name(), msg.key, body, None, None, None))
        metrics.DEADLETTERED.labels(reason).inc()
        log.warning("dead-lettered %s event from %s: %s", reason, msg.topic, detail)
    if futures:
        await asyncio.gather(*futures)


def _record_lag(app: faust.App, events) -> None:  # noqa: ANN001
    last: dict = {}
    for ev in events:
        last[ev.message.tp] = ev.message.offset
    for tp, offset in last.items():
        highwater = app.consumer.highwater(tp)
        if highwater is not None:
            metrics.LAG.labels(tp.topic, str(tp.partition)).set(max(0, highwater - offset - 1))
