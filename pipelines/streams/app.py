"""The Faust app: one agent folds every lead event into the `lead_to_engagement` table and lands the results.

Built by `create_app(settings)` (nothing happens at import). Scale out by starting more workers
(`leadscore stream worker`): they share the consumer group `leadscore-streams` and split the partitions.

Per batch (up to `batch_size` events or `flush_s` seconds) the agent *folds*: parses each message against its
topic's record, sets bad ones aside for `lead.deadletter`, drops duplicates by event id, updates each lead's state
once and snapshots what must be written. Then the batch *lands*, in order, one batch at a time, while the agent
folds the next one: dead letters, every changed lead's row offline (PostgreSQL) and online (Redis, leads with
scoring consent), labels for conversions, message text, and last the table's changelog. Each message holds a
reference of ours until its batch has landed, so offsets are committed only after both stores and the changelog
accepted the batch (at-least-once; every write is idempotent).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

import faust

from infra.config import Settings
from pipelines.streams import metrics
from pipelines.streams.aggregate import apply_event, feature_row, new_state, upgrade_state
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


@dataclass
class Folded:
    """One batch, folded into the table's state: everything its landing writes, snapshotted."""

    events: list
    batch: Batch = field(default_factory=Batch)
    dead: list = field(default_factory=list)                 # (message, reason, detail)
    changelog: list = field(default_factory=list)            # (key, partition, state as JSON bytes)
    event_times: list = field(default_factory=list)
    per_topic: Counter = field(default_factory=Counter)
    duplicates: int = 0


def fold(events: list, consent, table, now: datetime) -> Folded:  # noqa: ANN001
    """Parse, check consent, de-duplicate and update each touched lead's state (in `table`) once."""
    out = Folded(events)
    parsed = []
    for ev in events:
        msg = ev.message
        out.per_topic[msg.topic] += 1
        try:
            parsed.append((msg, parse(msg.topic, msg.key, msg.value, now)))
        except BadEvent as exc:
            out.dead.append((msg, exc.reason, str(exc)))
    touched, partition_of = {}, {}
    for msg, event in parsed:
        if event.lead_id not in consent.known:
            out.dead.append((msg, "unknown_lead", f"lead {event.lead_id!r} has no consent on record"))
            continue
        topic, key = msg.topic, event.lead_id.encode()
        lead_state = touched.get(key)
        if lead_state is None:
            lead_state = touched[key] = upgrade_state(table.get(key)) or new_state()
        partition_of[key] = msg.partition
        out.event_times.append(event.event_time.timestamp())
        # a duplicate still rewrites the lead's row, label and text (all idempotent): after a crash the changelog
        # can be ahead of the stores, and the replayed duplicates are what brings the stores level again
        if not apply_event(lead_state, topic, event):
            out.duplicates += 1
        if topic == TOPIC_CRM and event.status in LABEL_OF_STATUS:
            out.batch.labels.append((event.lead_id, event.event_time, LABEL_OF_STATUS[event.status]))
        elif topic in (TOPIC_MESSAGES, TOPIC_CALLS):
            text = event.text if topic == TOPIC_MESSAGES else event.notes
            if text:
                kind = event.channel if topic == TOPIC_MESSAGES else "call_note"
                out.batch.messages.append((event.event_id, event.lead_id, kind, event.direction, event.event_time,
                                           text))
    for key, lead_state in touched.items():
        table[key] = lead_state
        if lead_state["last"] is not None:
            out.batch.rows[key.decode()] = feature_row(lead_state)
        out.changelog.append((key, partition_of[key], json.dumps(lead_state).encode()))
    return out


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
    lead_to_engagement = app.Table("lead_to_engagement", default=None, partitions=partitions, key_type=bytes,
                                   use_partitioner=True)  # keys raw bytes, values JSON (the app defaults)
    changelog = lead_to_engagement.changelog_topic.get_topic_name()
    # opened before the worker starts: the agent must be iterating its stream from the first event it is handed
    sink = StoreSink(settings)

    async def land(folded: Folded, stream, started: float) -> None:  # noqa: ANN001
        """Write one folded batch everywhere, the changelog last, then release its messages for commit."""
        loop = asyncio.get_running_loop()
        await _send_dead(app, deadletter, folded.dead)
        counts = await _write_with_retry(loop, sink, folded.batch)
        # the changelog after the stores (a replay re-derives the rows), each send acknowledged by the broker.
        # Faust's own table writes go through a buffer whose flush() gives up after 0.1 s without a send, which
        # let a crash lose state: see docs/streams.md
        futures = [await app.producer.send(changelog, key, value, partition, None, None)
                   for key, partition, value in folded.changelog]
        await asyncio.gather(*futures)
        for ev in folded.events:
            await stream.ack(ev)  # releases our reference: the batch may now be committed
        done = time.time()
        for t in folded.event_times:
            metrics.FRESHNESS.observe(max(0.0, done - t))
        for topic, n in folded.per_topic.items():
            metrics.EVENTS_IN.labels(topic).inc(n)
        for sink_name, n in counts.items():
            metrics.ROWS_OUT.labels(sink_name).inc(n)
        metrics.DUPLICATES.inc(folded.duplicates)
        metrics.EVENTS_LANDED.inc(len(folded.events))
        metrics.BATCH_SIZE.observe(len(folded.events))
        metrics.BATCH_SECONDS.observe(time.monotonic() - started)
        _record_lag(app, folded.events)

    def stop_on(exc: BaseException) -> None:
        if getattr(app, "failure", None) is None:
            app.failure = exc  # type: ignore[attr-defined]
            log.error("a batch could not be processed; stopping the worker", exc_info=exc)
            os.kill(os.getpid(), signal.SIGTERM)  # exit 1 (see cli.py) rather than stall or skip the batch

    def landed_or_stop(task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            stop_on(task.exception())

    @app.agent(source)
    async def aggregate_lead_events(stream):  # noqa: ANN001
        loop = asyncio.get_running_loop()
        table = lead_to_engagement.data  # the table's store: its changelog is written by land(), in bulk
        landing: asyncio.Task | None = None
        async for events in stream.take_events(batch_size, within=flush_s):
            # take_events acknowledges a batch when the loop moves on, and also when the loop is left by an error or
            # a cancellation (a stopping worker): one reference of ours per message, released by land(), keeps a
            # batch that has not landed from ever being committed
            for ev in events:
                ev.message.incref()
            started = time.monotonic()
            try:
                if any(json_lead_unknown(ev, sink.consent.known) for ev in events):
                    await loop.run_in_executor(None, sink.consent.refresh)  # a lead may have been ingested just now
                folded = fold(events, sink.consent, table, datetime.now(UTC))
                if landing is not None:
                    await landing  # one batch lands at a time, in order, while the next one folds
            except Exception as exc:
                stop_on(exc)
                raise
            landing = asyncio.ensure_future(land(folded, stream, started))
            landing.add_done_callback(landed_or_stop)

    @app.timer(interval=5.0)
    async def refresh_consent() -> None:
        await asyncio.get_running_loop().run_in_executor(None, sink.consent.refresh)

    app.aggregate_lead_events = aggregate_lead_events  # type: ignore[attr-defined]
    return app


def json_lead_unknown(ev, known: set[str]) -> bool:  # noqa: ANN001
    """True if the message's key names a lead without consent on record (cheap: the key is the lead id)."""
    key = ev.message.key
    return key is not None and key.decode(errors="replace") not in known


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
