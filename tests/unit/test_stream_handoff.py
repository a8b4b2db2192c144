"""The batch handoff between the stream worker's consumer and its agent: order, limits, rebalances, tracking."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import pytest

pytest.importorskip("faust")

from pipelines.streams.consumer import Handoff, take_batch  # noqa: E402


class _Message:
    def __init__(self, offset: int) -> None:
        self.offset, self.tracked = offset, False


def _messages(n: int, start: int = 0) -> list[_Message]:
    return [_Message(start + i) for i in range(n)]


def _app(generation: int = 1) -> SimpleNamespace:
    return SimpleNamespace(consumer=SimpleNamespace(unacked=set()), consumer_generation_id=generation)


def test_lists_are_taken_in_order_and_split_to_fit_a_batch() -> None:
    handoff = Handoff(["t"], max_pending=100)
    handoff.put_nowait(1, _messages(3))
    handoff.put_nowait(1, _messages(4, start=3))
    first = handoff.take_nowait(5, 1)
    assert [m.offset for m in first] == [0, 1, 2, 3, 4] and handoff.pending == 2
    assert [m.offset for m in handoff.take_nowait(5, 1)] == [5, 6] and handoff.pending == 0


def test_lists_fetched_before_a_rebalance_are_dropped_and_clear_empties() -> None:
    handoff = Handoff(["t"], max_pending=100)
    handoff.put_nowait(1, _messages(3))
    handoff.put_nowait(2, _messages(2, start=10))
    assert [m.offset for m in handoff.take_nowait(10, 2)] == [10, 11] and handoff.pending == 0
    handoff.put_nowait(2, _messages(3))
    handoff.clear()
    assert handoff.pending == 0 and handoff.take_nowait(10, 2) == []


def test_a_full_handoff_holds_the_producer_until_the_agent_takes() -> None:
    async def run() -> list[int]:
        handoff = Handoff(["t"], max_pending=4)
        handoff.put_nowait(1, _messages(4))
        put = asyncio.create_task(handoff.put(1, _messages(2, start=4)))
        await asyncio.sleep(0.01)
        assert not put.done()
        taken = handoff.take_nowait(3, 1)
        await asyncio.wait_for(put, 1)
        return [m.offset for m in taken + handoff.take_nowait(10, 1)]

    assert asyncio.run(run()) == [0, 1, 2, 3, 4, 5]


def test_a_batch_waits_for_its_first_message_then_at_most_the_flush_time_and_tracks_each_message() -> None:
    async def run() -> tuple[list, float, SimpleNamespace]:
        app, handoff = _app(), Handoff(["t"], max_pending=100)

        async def feed() -> None:
            await asyncio.sleep(0.05)
            handoff.put_nowait(1, _messages(2))
            await asyncio.sleep(0.02)
            handoff.put_nowait(1, _messages(2, start=2))

        feeding = asyncio.create_task(feed())
        started = time.monotonic()
        batch = await take_batch(app, handoff, 100, within=0.1)
        await feeding
        return batch, time.monotonic() - started, app

    batch, took, app = asyncio.run(run())
    assert [m.offset for m in batch] == [0, 1, 2, 3]
    assert 0.14 <= took < 0.5  # 0.05 s until the first message, then the 0.1 s flush time
    assert all(m.tracked and m in app.consumer.unacked for m in batch)


def test_a_full_batch_is_returned_at_once() -> None:
    async def run() -> tuple[int, float]:
        handoff = Handoff(["t"], max_pending=100)
        handoff.put_nowait(1, _messages(30))
        started = time.monotonic()
        batch = await take_batch(_app(), handoff, 20, within=5.0)
        return len(batch), time.monotonic() - started

    n, took = asyncio.run(run())
    assert n == 20 and took < 1.0


class _Fetcher:
    """aiokafka's Fetcher as far as the pause wraps it: a fetch that returns whether it brought records."""

    def __init__(self, brings: bool) -> None:
        self.brings = brings

    async def _proc_fetch_request(self, assignment, node_id, request) -> bool:  # noqa: ANN001
        return self.brings


def test_an_early_empty_fetch_is_followed_by_a_pause_and_one_with_records_is_not() -> None:
    from pipelines.streams.consumer import pause_after_empty_fetches

    async def timed(brings: bool) -> tuple[bool, float]:
        fetcher = _Fetcher(brings)
        pause_after_empty_fetches(fetcher, pause_s=0.05)
        started = time.monotonic()
        got = await fetcher._proc_fetch_request(None, 0, None)
        return got, time.monotonic() - started

    empty, empty_took = asyncio.run(timed(False))
    full, full_took = asyncio.run(timed(True))
    assert (empty, full) == (False, True)
    assert empty_took >= 0.045 and full_took < 0.04


def test_a_paused_fetch_cancelled_by_the_fetcher_closing_returns_as_aiokafka_expects() -> None:
    """Fetcher.close() cancels pending fetches and awaits them: raising there hung the worker's stop for 60 s."""
    from pipelines.streams.consumer import pause_after_empty_fetches

    async def run() -> bool:
        fetcher = _Fetcher(False)
        pause_after_empty_fetches(fetcher, pause_s=5.0)
        task = asyncio.create_task(fetcher._proc_fetch_request(None, 0, None))
        await asyncio.sleep(0.01)
        task.cancel()
        return await asyncio.wait_for(task, 1)

    assert asyncio.run(run()) is False
