"""The prediction log's COPY text and its bounded queue (the writes themselves are tested against real Postgres in
tests/integration/test_serving.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from serving.logwriter import PREDICTION_COLUMNS, LogWriter, _prediction_text


def test_copy_text_formats_nulls_floats_and_times_and_escapes_text() -> None:
    at = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)
    shared = (at, "rank", "req1", "key1", "ten\tant", "lead-scorer", "7", "xeducation_v1")
    served = {"city": 'Pu"ne\\', "views": float("nan"), "first_touch": at, "n": 3}
    text = _prediction_text([(shared, ("L1", 0.25, "B", None, 0.5, 0, None)),
                             (shared, ("L\\2\n", 1e-05, "A", 0.1, None, 3, served))])
    lines = text.split("\n")
    assert lines[-1] == "" and len(lines) == 3
    first = lines[0].split("\t")
    assert len(first) == len(PREDICTION_COLUMNS)
    assert first[0] == "2026-11-24T09:30:00+00:00" and first[4] == "ten\\tant"  # the tab in the tenant is escaped
    assert lines[0].endswith("\tL1\t0.25\tB\t\\N\t0.5\t0\t\\N")
    assert "\tL\\\\2\\n\t1e-05\tA\t0.1\t\\N\t3\t" in lines[1]
    # the served row as JSON, its own backslashes doubled for COPY; NaN is null, the time ISO 8601
    logged = lines[1].split("\t")[-1].replace("\\\\", "\\")
    assert json.loads(logged) == {"city": 'Pu"ne\\', "views": None, "first_touch": "2026-11-24T09:30:00Z", "n": 3}


def test_the_queue_keeps_the_newest_rows_and_counts_what_it_drops() -> None:
    dropped = []
    writer = LogWriter(lambda: None, every_s=3600, max_pending=5, on_drop=lambda kind, n: dropped.append((kind, n)))
    try:
        shared = (datetime.now(UTC), "rank", "r", "k", "t", "m", "1", "fs")
        writer.add_predictions(shared, [(f"L{i}", 0.5, "A", None, None, 0, None) for i in range(8)])
        assert dropped == [("prediction", 3)]
        assert [lead[0] for _, lead in writer.predictions] == ["L3", "L4", "L5", "L6", "L7"]
    finally:
        writer._stop.set()
        writer._wake.set()


def test_request_ids_are_unique_16_hex_characters() -> None:
    from serving.engine import new_request_id

    ids = [new_request_id() for _ in range(50_000)]
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 16 and int(i, 16) >= 0 for i in ids[:100])


def test_a_nul_in_a_logged_feature_cannot_fail_the_batch() -> None:
    from serving.logwriter import _copy_value

    text = _copy_value({"city": "Pu\x00ne", "visits": 3})
    assert "\\u0000" not in text and json.loads(text) == {"city": "Pu\ufffdne", "visits": 3}
