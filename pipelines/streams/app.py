"""The Faust app: one agent folds every lead event into the `lead_to_engagement` table and lands the results.

Built by `create_app(settings)` (nothing happens at import). Scale out by starting more workers
(`leadscore stream worker`): they share the consumer group `leadscore-streams` and split the partitions.

The consumer hands the agent each fetch of the source topics in one list (`consumer.py`: Faust's own path, one
message at a time, stayed below 10,000 events/s on 2 cores with no work done). Per batch (up to `batch_size` events
or `flush_s` seconds) the agent *folds*, in a thread of its own: parses each message against its topic's record,
sets bad ones aside for `lead.deadletter`, drops duplicates by event id, updates each lead's state once and
snapshots what must be written. Then the batch *lands*, in order, one batch at a time, while the agent folds the
next one: dead letters, then every changed lead's row offline (PostgreSQL: labels for conversions and message text
in the same transaction) and online (Redis, leads with scoring consent) side by side, and last the table's
changelog. Each message is tracked by Faust's consumer from the moment the agent takes it and acknowledged only
after its batch has landed, so offsets are committed only after both stores and the changelog accepted the batch
(at-least-once; every write is idempotent).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import faust
from aiokafka.producer.message_accumulator import BatchBuilder

from infra.config import Settings
from pipelines.streams import metrics
from pipelines.streams.consumer import BatchTransport, Handoff, take_batch
from pipelines.streams.fold import Folded, fold
from pipelines.streams.records import (
    SOURCE_TOPICS,
    TOPIC_CRM,
    TOPIC_DEADLETTER,
)
from pipelines.streams.sinks import Batch, StoreSink, is_event_fault, write_isolating

log = logging.getLogger("leadscore.streams")
APP_ID = "leadscore-streams"
# events per batch at most: reached only with a backlog (live traffic lands every `flush_s`), where each lead's row,
# online write and changelog state then serve more of its events (measured in docs/streams.md, Throughput)
DEFAULT_BATCH_SIZE = 20_000
LAND_GRACE_S = 5.0  # on SIGTERM, how long a batch still being written may take before it is left to the next worker


class LeadStreamApp(faust.App):
    """A Faust app whose consumer hands the agent its source topics' messages a fetch at a time (consumer.py)."""

    handoff: Handoff | None = None
    landing: asyncio.Task | None = None  # the batch being written to the stores, if any

    def _new_transport(self) -> BatchTransport:
        return BatchTransport(self.conf.broker_consumer, self)

    async def on_stop(self) -> None:
        """Give the batch in flight LAND_GRACE_S to land, then let it go unacknowledged (a store is down and being
        retried): Faust's consumer would otherwise wait for its messages forever before it stops. What has landed is
        committed; the rest is processed again by the next worker (every write is idempotent)."""
        landing = self.landing
        if landing is not None and not landing.done():
            await asyncio.wait({landing}, timeout=LAND_GRACE_S)
        if landing is not None and not landing.done():
            landing.cancel()
        unacked = getattr(self.consumer, "_unacked_messages", None)
        pending = [m for m in unacked or () if not m.acked]
        if pending:
            log.warning("stopping with %d events not landed (a store was unreachable for %.0f s): their offsets are "
                        "not committed, so the next worker processes them again", len(pending), LAND_GRACE_S)
            unacked.clear()
        await super().on_stop()


def create_app(settings: Settings, batch_size: int = DEFAULT_BATCH_SIZE, flush_s: float = 0.1) -> faust.App:
    """The stream app for these servers."""
    partitions = int(settings.env.get("LEADSCORE_STREAM_PARTITIONS", "6"))
    (settings.state_dir / "streams").mkdir(parents=True, exist_ok=True)
    app = LeadStreamApp(
        # the consumer group (and the table's changelog topic) are named after the app id; tests that share a
        # broker give each worker set a group of its own (LEADSCORE_STREAM_GROUP), so no earlier group state is met
        settings.env.get("LEADSCORE_STREAM_GROUP", APP_ID), broker=f"kafka://{settings.kafka_bootstrap}",
        store="memory://", topic_partitions=partitions,
        # Faust's folder (per app id) under the state directory, not the working directory
        datadir=str(settings.state_dir / "streams" / "{conf.id}-data"),
        web_enabled=False, processing_guarantee="at_least_once", consumer_auto_offset_reset="earliest",
        broker_commit_every=batch_size, broker_commit_interval=1.0, producer_acks=-1,
        table_standby_replicas=0, topic_disable_leader=True,
        # a crashed worker's partitions move to the survivors after this long (Faust's default is 60 s)
        broker_session_timeout=float(settings.env.get("LEADSCORE_STREAM_SESSION_TIMEOUT", "10")),
        broker_heartbeat_interval=1.0,
        broker_credentials=settings.faust_credentials(),  # KAFKA_SECURITY_PROTOCOL, SASL and TLS settings
    )
    source = app.topic(*SOURCE_TOPICS, key_type=bytes, value_type=bytes, key_serializer="raw",
                       value_serializer="raw", partitions=partitions)
    deadletter = app.topic(TOPIC_DEADLETTER, key_type=bytes, value_type=bytes, key_serializer="raw",
                           value_serializer="raw", partitions=partitions)
    lead_to_engagement = app.Table("lead_to_engagement", default=None, partitions=partitions, key_type=bytes,
                                   use_partitioner=True)  # keys raw bytes, values JSON (the app defaults)
    changelog = lead_to_engagement.changelog_topic.get_topic_name()
    # at most two batches wait between the consumer and the agent; a rebalance empties it (as Faust's channels)
    handoff = app.handoff = Handoff(SOURCE_TOPICS, max_pending=2 * batch_size)
    app.flow_control.manage_queue(handoff)  # type: ignore[arg-type]
    # opened before the worker starts: the agent must be taking batches from the first event it is handed
    sink = StoreSink(settings)
    folder = ThreadPoolExecutor(1, thread_name_prefix="fold")

    async def land(folded: Folded, started: float) -> None:
        """Write one folded batch everywhere, the changelog last, then release its messages for commit."""
        loop = asyncio.get_running_loop()
        await _send_dead(app, deadletter, folded.dead)
        refused: dict[tuple, str] = {}
        counts = await _write_with_retry(loop, sink, folded.batch, refused)
        if refused:  # what the database refused, alone: its events dead-lettered, the rest of the batch landed
            await _send_dead(app, deadletter, refused_events(folded, refused))
        # the changelog after the stores (a replay re-derives the rows), each send acknowledged by the broker.
        # Faust's own table writes go through a buffer whose flush() gives up after 0.1 s without a send, which
        # let a crash lose state: see docs/streams.md
        await _send_changelog(app, changelog, folded.changelog)
        ack = app.consumer.ack
        for msg in folded.messages:
            ack(msg)  # the batch may now be committed
        done = time.time()
        for t in folded.event_times:
            metrics.FRESHNESS.observe(max(0.0, done - t))
        for topic, n in folded.per_topic.items():
            metrics.EVENTS_IN.labels(topic).inc(n)
        for sink_name, n in counts.items():
            metrics.ROWS_OUT.labels(sink_name).inc(n)
        metrics.DUPLICATES.inc(folded.duplicates)
        metrics.ERASED.inc(folded.erased)
        metrics.MINORS.inc(folded.minors)
        metrics.EVENTS_LANDED.inc(len(folded.messages))
        metrics.LAST_LANDED.set(done)
        metrics.BATCH_SIZE.observe(len(folded.messages))
        metrics.BATCH_SECONDS.observe(time.monotonic() - started)
        _record_lag(app, folded.messages)

    def stop_on(exc: BaseException) -> None:
        if getattr(app, "failure", None) is None:
            app.failure = exc  # type: ignore[attr-defined]
            log.error("a batch could not be processed; stopping the worker", exc_info=exc)
            os.kill(os.getpid(), signal.SIGTERM)  # exit 1 (see cli.py) rather than stall or skip the batch

    def landed_or_stop(task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            stop_on(task.exception())

    limits = settings.event_limits()  # read once, at start: a bad setting stops the worker with one line

    @app.agent(source)
    async def aggregate_lead_events(stream):  # noqa: ANN001, ARG001 - the stream stays empty (see consumer.py)
        loop = asyncio.get_running_loop()
        table = lead_to_engagement.data  # the table's store: its changelog is written by land(), in bulk
        landing: asyncio.Task | None = None
        while True:
            messages = await take_batch(app, handoff, batch_size, flush_s)
            started = time.monotonic()
            try:
                if any(_lead_unknown(msg, sink.consent.known) for msg in messages):
                    await loop.run_in_executor(None, sink.consent.refresh)  # a lead may have been ingested just now
                # in a thread of its own, so that the event loop lands the previous batch meanwhile (changelog
                # sends, acknowledgements) and keeps fetching; only this agent touches the table's store
                folded = await loop.run_in_executor(folder, fold, messages, sink.consent, table, datetime.now(UTC),
                                                    limits)
                if landing is not None:  # one batch lands at a time, in order, while the next one folds
                    await asyncio.wait({landing})
                    if landing.cancelled() or landing.exception() is not None:
                        # the worker is stopping (on_stop, or landed_or_stop on a failure): nothing may land after a
                        # batch that did not; wait to be cancelled with the agent
                        await loop.create_future()
            except Exception as exc:
                stop_on(exc)
                raise
            landing = app.landing = asyncio.ensure_future(land(folded, started))
            landing.add_done_callback(landed_or_stop)

    @app.timer(interval=5.0)
    async def refresh_consent() -> None:
        await asyncio.get_running_loop().run_in_executor(None, sink.consent.refresh)

    app.aggregate_lead_events = aggregate_lead_events  # type: ignore[attr-defined]
    return app


def _lead_unknown(msg, known: set[str]) -> bool:  # noqa: ANN001
    """True if the message's key names a lead without consent on record (cheap: the key is the lead id)."""
    key = msg.key
    return key is not None and key.decode(errors="replace") not in known


async def _write_with_retry(loop, sink: StoreSink, batch: Batch, refused: dict) -> dict[str, int]:  # noqa: ANN001
    """Land the batch in PostgreSQL and Redis side by side (two threads). While a store is down (the world's
    fault) its part is retried with back-off, the batch unacknowledged: nothing lost, nothing reordered, both parts
    idempotent. When PostgreSQL refuses what the batch holds (the events' fault), the batch is tried
    EVENT_FAULT_TRIES times, then written by halves until each refused item stands alone (`refused`)."""
    offline, online = await asyncio.gather(_retrying(loop, sink.write_offline, batch, sink.reconnect, refused),
                                           _retrying(loop, sink.write_online, batch, sink.reconnect_online))
    return {**offline, **online}


EVENT_FAULT_TRIES = 2


async def _retrying(loop, write, batch: Batch, reconnect, refused: dict | None = None) -> dict[str, int]:  # noqa: ANN001
    delay, event_faults = 0.5, 0
    while True:
        try:
            if refused is not None and event_faults >= EVENT_FAULT_TRIES:
                counts, bad = await loop.run_in_executor(None, write_isolating, write, batch)
                refused.update(bad)
                return counts
            return await loop.run_in_executor(None, write, batch)
        except Exception as exc:  # noqa: BLE001 - any store failure: log, reconnect, retry
            metrics.SINK_ERRORS.inc()
            event = is_event_fault(exc)
            event_faults += event
            wait = 0.1 if event else delay
            log.error("writing the batch failed (%s: %s); retrying in %.1f s", "refused" if event else "store",
                      str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__, wait)
            await asyncio.sleep(wait)
            delay = delay if event else min(delay * 2, 30.0)
            await loop.run_in_executor(None, reconnect)


def refused_events(folded: Folded, refused: dict[tuple, str]) -> list[tuple]:
    """(message, reason, detail) of the events behind the refused items: a message's own event, every event of a
    lead whose row was refused, the CRM events of a lead whose label was."""
    events, rows, labels = {}, {}, {}
    for item, why in refused.items():
        if item[0] == "message":
            events[item[1]] = why
        elif item[0] == "row":
            rows[item[1]] = why
        else:
            labels[item[1]] = why
    out = []
    for msg, lead, event_id in folded.sources:
        why = events.get(event_id) or rows.get(lead) or (labels.get(lead) if msg.topic == TOPIC_CRM else None)
        if why:
            out.append((msg, "store_refused", f"PostgreSQL refused what the event holds: {why}"))
    return out


CHANGELOG_BATCH_BYTES = 256 * 1024  # a record batch, well below the 1 MB a Kafka broker takes by default


async def _send_changelog(app: faust.App, topic: str, changelog: list) -> None:
    """Send the changed states as record batches, one open per partition; wait until the broker has every one.

    One `send_batch` per 256 KiB instead of a `send` per state: aiokafka's per-message `send` alone took about
    17 microseconds of CPU per state here, a batch about 7 (Faust's `send` wrapper adds to the former).
    """
    producer = app.producer._ensure_producer()  # the aiokafka producer behind Faust's (acks=all, as configured)
    open_batches: dict[int, BatchBuilder] = {}
    futures = []
    for key, partition, value in changelog:
        batch = open_batches.get(partition)
        if batch is None or batch.append(key=key, value=value, timestamp=None) is None:
            if batch is not None:  # full: send it, start the next one
                futures.append(await producer.send_batch(batch, topic, partition=partition))
            batch = open_batches[partition] = BatchBuilder(CHANGELOG_BATCH_BYTES, 0, is_transactional=False)
            batch.append(key=key, value=value, timestamp=None)  # an empty batch takes one record of any size
    for partition, batch in open_batches.items():
        futures.append(await producer.send_batch(batch, topic, partition=partition))
    await asyncio.gather(*futures)


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


def _record_lag(app: faust.App, messages: list) -> None:
    last: dict = {}
    for msg in messages:
        last[msg.tp] = msg.offset
    for tp, offset in last.items():
        highwater = app.consumer.highwater(tp)
        if highwater is not None:
            metrics.LAG.labels(tp.topic, str(tp.partition)).set(max(0, highwater - offset - 1))
