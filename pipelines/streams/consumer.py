"""Faust's Kafka consumer, handing the agent its source messages a fetch at a time instead of one by one.

Faust delivers each fetched message on its own: the drain loop awaits `wait_first(callback(message), ...)` (four
tasks and an `asyncio.wait` per message), the conductor decodes it into an Event on the agent's channel, and the
stream pulls, tracks and acknowledges it, again one at a time. On 2 cores that path alone stayed below 10,000
events/s with no work done (`bench/streams.py`, "Faust agent, no work"). `BatchConsumer` keeps everything else of
Faust's consumer (group membership, rebalances, the consumer thread, seeks, commits, gaps, table recovery) and
changes only the delivery of messages on `Handoff.topics`: each fetch's messages go to the `Handoff` in one list.
Messages of every other topic (the table's changelog during recovery) take Faust's own path unchanged.

The agent takes lists from the handoff, tracks each message as Faust's stream would (`Consumer.unacked`, so a
rebalance waits for the batch in flight to land) and acknowledges each one through `Consumer.ack` once its batch
has landed; commits then work exactly as before. Messages still in the handoff when a rebalance starts were never
tracked: they are dropped there, and Faust's seek to the committed offsets fetches them again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Iterable
from time import monotonic
from typing import Any

from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka


class Handoff:
    """Fetched messages on their way from the consumer's drain loop to the agent, in fetch-sized lists.

    Bounded by `max_pending` messages: a full handoff holds the drain loop (backpressure, as a full channel does in
    Faust). Lists are dropped whole when the consumer's generation changes (a rebalance) before the agent took them.
    """

    def __init__(self, topics: Iterable[str], max_pending: int) -> None:
        self.topics = frozenset(topics)
        self.max_pending = max_pending
        self.pending = 0
        self._lists: deque[tuple[int, list]] = deque()
        self._not_empty = asyncio.Event()
        self._not_full = asyncio.Event()
        self._not_full.set()

    def full(self) -> bool:
        return self.pending >= self.max_pending

    def put_nowait(self, generation_id: int, messages: list) -> None:
        self._lists.append((generation_id, messages))
        self.pending += len(messages)
        if self.full():
            self._not_full.clear()
        self._not_empty.set()

    async def put(self, generation_id: int, messages: list) -> None:
        while self.full():
            await self._not_full.wait()
        self.put_nowait(generation_id, messages)

    def clear(self) -> None:
        self._lists.clear()
        self._set_pending(0)

    def _set_pending(self, n: int) -> None:
        self.pending = n
        if not self.full():
            self._not_full.set()
        if not self._lists:
            self._not_empty.clear()

    def take_nowait(self, room: int, generation_id: int) -> list:
        """Up to `room` messages already here, oldest first (lists of another generation are dropped)."""
        out: list = []
        lists = self._lists
        while lists and len(out) < room:
            gen, messages = lists[0]
            if gen != generation_id:
                lists.popleft()
                self.pending -= len(messages)
                continue
            need = room - len(out)
            if len(messages) <= need:
                lists.popleft()
                out.extend(messages)
                self.pending -= len(messages)
            else:
                out.extend(messages[:need])
                lists[0] = (gen, messages[need:])
                self.pending -= need
        self._set_pending(self.pending)
        return out

    async def wait(self, timeout: float | None = None) -> bool:
        """Wait until something is here (at most `timeout` s); True if something is."""
        if not self._lists:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._not_empty.wait(), timeout)
        return bool(self._lists)


async def take_batch(app: Any, handoff: Handoff, max_: int, within: float) -> list:
    """The next batch: waits for a first message, then up to `within` s for more, `max_` messages at most.

    Every message taken is tracked by Faust's consumer as its stream would track it (`Consumer.unacked`): a
    rebalance waits until the batch has landed and its messages are acknowledged (`Consumer.ack`).
    """
    unacked = app.consumer.unacked
    batch: list = []
    deadline = None
    while len(batch) < max_:
        if deadline is None:
            await handoff.wait()
        elif (left := deadline - monotonic()) <= 0 or not await handoff.wait(left):
            break
        taken = handoff.take_nowait(max_ - len(batch), app.consumer_generation_id)
        for msg in taken:
            msg.tracked = True
            unacked.add(msg)
        batch += taken
        if batch and deadline is None:
            deadline = monotonic() + within
    return batch


# The embedded broker (noida-db 0.2.3) answers a fetch at once even when it has nothing, instead of holding it up to
# fetch.max.wait.ms (1.5 s in Faust) as Kafka does: aiokafka then sends thousands of empty fetches a second, and
# decoding their replies took about a fifth of the worker's interpreter time. An empty reply that came back sooner
# than this is followed by this long a pause (Kafka's own replies to an idle fetch take 1.5 s, so it changes nothing
# there); new events wait at most this much longer to be fetched.
EMPTY_FETCH_PAUSE_S = 0.02


def pause_after_empty_fetches(fetcher: Any, pause_s: float = EMPTY_FETCH_PAUSE_S) -> None:
    """Make an aiokafka `Fetcher` wait `pause_s` after a fetch that brought nothing back early (see above)."""
    fetch = fetcher._proc_fetch_request

    async def fetch_then_pause(assignment: Any, node_id: int, request: Any) -> bool:
        started = monotonic()
        got_something = await fetch(assignment, node_id, request)
        left = pause_s - (monotonic() - started)
        if not got_something and left > 0:
            # the node stays "in flight" meanwhile: no other fetch goes to it. Cancelled, return as aiokafka's own
            # fetch does: Fetcher.close() cancels this task and awaits it (a raise there hung the worker's stop)
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(left)
        return got_something

    fetcher._proc_fetch_request = fetch_then_pause


class BatchConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer thread, its aiokafka fetcher pausing after early empty fetches."""

    async def on_start(self) -> None:
        await super().on_start()
        pause_after_empty_fetches(self._consumer._fetcher)


class BatchConsumer(faust_aiokafka.Consumer):
    """The aiokafka consumer of Faust, delivering messages of `app.handoff.topics` one fetch at a time."""

    def _new_consumer_thread(self) -> BatchConsumerThread:
        return BatchConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - runs in the worker
        handoff: Handoff | None = getattr(self.app, "handoff", None)
        if handoff is None:
            await super()._drain_messages(fetcher)
            return
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        set_flag, unset_flag = self.diag.set_flag, self.diag.unset_flag
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(CONSUMER_FETCHING)
                records, active = await self._wait_next_records(1.0)
                # as Faust's loop does: getmany can return at once many times in a row
                await self.sleep(0)
                if records is not None and not self.should_stop:
                    if self.flow_active:
                        await self._deliver(records, active, handoff)
                    else:  # as Faust's getmany: fetched while the flow stopped, so go back to the committed offsets
                        try:
                            await self.perform_seek()
                        except Exception as exc:  # noqa: BLE001 - Faust logs and goes on here too
                            self.log.warning(f"exception performing seek when flow not active {exc}")
                unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            unset_flag(CONSUMER_FETCHING)

    async def _deliver(self, records: Any, active: set | None, handoff: Handoff) -> None:
        """One fetch: source messages to the handoff in one list, any other message through Faust's callback."""
        generation_id = self.app.consumer_generation_id
        read_offset = self._read_offset
        buffered = self._buffered_partitions
        to_message = self._to_message
        acks_enabled_for = self.app.topics.acks_enabled_for
        monitor = self.app.monitor
        now = monotonic()
        batch: list = []
        for tp, tp_records in records.items():
            if self.app.consumer_generation_id != generation_id or not self.flow_active:
                return  # a rebalance began: Faust's getmany stops here too, and the seek after it refetches
            if active is not None and tp not in active and tp not in buffered:
                continue
            monitor.track_tp_end_offset(tp, self.highwater(tp))
            if tp.topic not in handoff.topics:
                await self._deliver_one_by_one(tp, tp_records)
                continue
            r_offset = read_offset[tp]
            gaps = []
            for record in tp_records:
                offset = record.offset
                if r_offset is None or offset >= r_offset:
                    if r_offset and offset - r_offset > 1:
                        gaps.append((r_offset + 1, offset))
                    batch.append(to_message(tp, record))
                    r_offset = offset
            read_offset[tp] = r_offset
            if gaps and acks_enabled_for(tp.topic):
                for start, end in gaps:
                    await self._add_gap(tp, start, end)
            # what Faust's stream sensor records per event; its livelock check reads it (once per fetch is enough)
            monitor.stream_inbound_time[tp] = now
        if not batch:
            return
        commit_every = self._commit_every
        if commit_every is not None and self._n_acked >= commit_every:
            self._n_acked = 0
            await self.commit()
        if not handoff.full():
            handoff.put_nowait(generation_id, batch)
        else:
            await self.wait_first(handoff.put(generation_id, batch), self.suspend_flow.wait())

    async def _deliver_one_by_one(self, tp: Any, tp_records: list) -> None:
        """Faust's own per-message path (`Consumer._drain_messages`), for the topics the handoff does not take."""
        to_message = self._to_message
        read_offset = self._read_offset
        commit_every = self._commit_every
        for record in tp_records:
            offset = record.offset
            r_offset = read_offset[tp]
            if r_offset is None or offset >= r_offset:
                if offset - (r_offset or 0) > 1 and r_offset and self.app.topics.acks_enabled_for(tp.topic):
                    await self._add_gap(tp, r_offset + 1, offset)
                if commit_every is not None and self._n_acked >= commit_every:
                    self._n_acked = 0
                    await self.commit()
                await self.wait_first(self.callback(to_message(tp, record)), self.suspend_flow.wait())
                read_offset[tp] = offset


class BatchTransport(faust_aiokafka.Transport):
    """Faust's aiokafka transport with `BatchConsumer` as its consumer."""

    Consumer = BatchConsumer
