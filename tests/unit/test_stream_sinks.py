"""The events' fault and the world's fault in the store writes: a refused item is isolated by halves, a store
that is down is raised for the retry with back-off."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest

from pipelines.streams.sinks import Batch, is_event_fault, write_isolating

AT = datetime(2026, 12, 1, tzinfo=UTC)


def _batch(n: int, poison: set[int]) -> Batch:
    return Batch(rows={f"L{i}": {"event_timestamp": AT} for i in range(n)},
                 labels=[(f"L{i}", AT, 1) for i in range(0, n, 7)],
                 messages=[(f"e{i}", f"L{i}", "sms", "inbound", AT, "poison" if i in poison else "hello")
                           for i in range(n)])


def _store(calls: list) -> callable:  # noqa: ANN202
    def write(batch: Batch) -> dict[str, int]:
        calls.append(len(batch.items()))
        if any(m[5] == "poison" for m in batch.messages):
            raise psycopg.errors.CheckViolation("new row violates check constraint")
        return {"offline": len(batch.rows), "labels": len(batch.labels), "messages": len(batch.messages)}
    return write


def test_a_refused_item_is_isolated_and_everything_else_is_written() -> None:
    calls: list = []
    counts, refused = write_isolating(_store(calls), _batch(500, {17, 333}))
    assert set(refused) == {("message", "e17", 17), ("message", "e333", 333)}
    assert all("CheckViolation" in why for why in refused.values())
    assert counts == {"offline": 500, "labels": len(range(0, 500, 7)), "messages": 498}
    assert len(calls) < 60  # by halves: about 2 x 2 x log2(1,072 items) writes, not one per item


def test_the_worlds_fault_is_raised_for_the_retry_not_isolated() -> None:
    def down(batch: Batch) -> dict[str, int]:
        raise psycopg.OperationalError("connection refused")

    assert not is_event_fault(psycopg.OperationalError("x")) and is_event_fault(psycopg.errors.CheckViolation("x"))
    with pytest.raises(psycopg.OperationalError):
        write_isolating(down, _batch(10, set()))
