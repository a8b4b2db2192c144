"""The stream worker's pure parts: parsing events into records (or dead-letter reasons) and the per-lead state."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

pytest.importorskip("faust")

from pipelines.streams.aggregate import apply_event, feature_row, new_state, prune_state  # noqa: E402
from pipelines.streams.parse import BadEvent, parse  # noqa: E402
from pipelines.streams.records import TOPIC_EMAIL, TOPIC_MESSAGES, TOPIC_WEB, WebEvent  # noqa: E402

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def _web(**fields) -> bytes:  # noqa: ANN003
    body = {"event_id": "e1", "lead_id": "L1", "event_time": NOW.isoformat(), "action": "listing_view", **fields}
    return json.dumps({k: v for k, v in body.items() if v is not ...}).encode()


def test_a_record_serialised_by_faust_parses_back() -> None:
    event = WebEvent(event_id="e9", lead_id="L9", event_time=NOW, action="session", duration_s=42)
    parsed = parse(TOPIC_WEB, b"L9", event.dumps(), NOW)
    assert (parsed.event_id, parsed.lead_id, parsed.event_time, parsed.action, parsed.duration_s) == (
        "e9", "L9", NOW, "session", 42.0)
    assert parsed.listing_id is None


@pytest.mark.parametrize(("raw", "reason", "says"), [
    (b"{nope", "unparseable", "not JSON"),
    (b"[1, 2]", "unparseable", "not a JSON object"),
    (_web(event_time=...), "missing_field", "event_time"),
    (_web(action="dance"), "invalid_value", "'dance' is not one of"),
    (_web(duration_s="long"), "invalid_value", "duration_s must be a number"),
    (_web(event_time="yesterday"), "invalid_value", "ISO 8601"),
    (_web(event_time=(NOW + timedelta(hours=1)).isoformat()), "future_event_time", "in the future"),
    (_web(lead_id=""), "missing_field", "must not be empty"),
])
def test_bad_events_get_a_reason_and_a_detail(raw: bytes, reason: str, says: str) -> None:
    with pytest.raises(BadEvent) as caught:
        parse(TOPIC_WEB, None, raw, NOW)
    assert caught.value.reason == reason
    assert says in str(caught.value)


def test_the_message_key_must_be_the_lead() -> None:
    with pytest.raises(BadEvent) as caught:
        parse(TOPIC_WEB, b"L2", _web(), NOW)
    assert caught.value.reason == "key_mismatch"


def test_unknown_fields_are_refused_and_naive_times_are_utc() -> None:
    parsed = parse(TOPIC_WEB, b"L1", _web(event_time="2026-11-24T11:00:00"), NOW)
    assert parsed.event_time == datetime(2026, 11, 24, 11, tzinfo=UTC)
    with pytest.raises(BadEvent) as caught:  # a producer's typo (or a field we do not know) is not dropped silently
        parse(TOPIC_WEB, b"L1", _web(colour="blue", duraton_s=3.0), NOW)
    assert caught.value.reason == "unknown_field" and "colour, duraton_s" in str(caught.value)


def _event(topic: str, i: int, at: datetime, **fields):  # noqa: ANN003, ANN202
    body = {"event_id": f"e{i}", "lead_id": "L1", "event_time": at.isoformat(), **fields}
    return parse(topic, b"L1", json.dumps(body).encode(), NOW)


def test_windows_count_back_from_the_latest_event_and_duplicates_count_once() -> None:
    state = new_state()
    times = [NOW - timedelta(days=40), NOW - timedelta(days=20), NOW - timedelta(days=3), NOW - timedelta(hours=2),
             NOW - timedelta(minutes=5)]
    for i, at in enumerate(times):
        assert apply_event(state, TOPIC_WEB, _event(TOPIC_WEB, i, at, action="listing_view"))
    assert not apply_event(state, TOPIC_WEB, _event(TOPIC_WEB, 4, times[4], action="listing_view"))
    apply_event(state, TOPIC_EMAIL, _event(TOPIC_EMAIL, 10, NOW - timedelta(hours=1), action="opened"))
    row = feature_row(state)
    assert (row["listing_views_1d"], row["listing_views_7d"], row["listing_views_30d"]) == (2, 3, 4)
    assert row["emails_opened_1d"] == 1 and row["searches_30d"] == 0
    assert row["event_timestamp"] == NOW - timedelta(minutes=5)
    assert row["first_touch_ts"] == times[0].timestamp()


def test_a_duplicate_is_caught_however_many_events_came_between() -> None:
    state = new_state()
    for i in range(3000):
        apply_event(state, TOPIC_WEB, _event(TOPIC_WEB, i, NOW - timedelta(days=6, seconds=-i * 60),
                                             action="search"))
    before = feature_row(state)
    assert not apply_event(state, TOPIC_WEB, _event(TOPIC_WEB, 0, NOW - timedelta(days=6), action="search"))
    assert feature_row(state) == before and before["searches_7d"] == 3000


def test_reply_latency_runs_from_our_first_unanswered_message_to_the_reply() -> None:
    state = new_state()
    out = dict(channel="whatsapp", direction="outbound", text="Site visit?")
    apply_event(state, TOPIC_MESSAGES, _event(TOPIC_MESSAGES, 1, NOW - timedelta(minutes=30), **out))
    apply_event(state, TOPIC_MESSAGES, _event(TOPIC_MESSAGES, 2, NOW - timedelta(minutes=20), **out))
    apply_event(state, TOPIC_MESSAGES, _event(TOPIC_MESSAGES, 3, NOW - timedelta(minutes=10), channel="whatsapp",
                                              direction="inbound", text="haan, Sunday"))
    row = feature_row(state)
    assert row["whatsapp_reply_latency_s_30d"] == 1200.0
    assert (row["whatsapp_out_1d"], row["whatsapp_in_1d"]) == (2, 1)


def test_pruning_once_after_a_batch_gives_the_state_pruning_after_every_event_gives() -> None:
    """The agent prunes each lead once per batch; the windows and counts must not change."""
    import random

    rng = random.Random(7)
    events = [(TOPIC_WEB, _event(TOPIC_WEB, i, NOW - timedelta(days=rng.uniform(0, 45)), action=rng.choice(
        ["listing_view", "session", "search"]), duration_s=rng.uniform(1, 300))) for i in range(400)]
    events += [(TOPIC_EMAIL, _event(TOPIC_EMAIL, 1000 + i, NOW - timedelta(hours=rng.uniform(0, 60)),
                                    action="opened")) for i in range(100)]
    rng.shuffle(events)
    events += events[-50:]  # duplicates
    each, once = new_state(), new_state()
    for topic, event in events:
        apply_event(each, topic, event)
        apply_event(once, topic, event, prune=False)
    assert once != each  # not pruned yet
    prune_state(once)
    assert once == each and feature_row(once) == feature_row(each)
