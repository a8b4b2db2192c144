"""Every stream event value inside its declared range, or a dead letter with a reason (a property, by Hypothesis).

Events of every topic are generated with arbitrary values in every field (text with NUL characters and lone
surrogates, huge and non-finite numbers, times from any year, unknown fields, wrong types); each must either parse
into an event whose every value the stores take as it is, or be refused with one of the dead-letter reasons.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings

from pipelines.streams.parse import CHECKS, MAX_STR, MAX_TEXT, RANGES, SCHEMAS, BadEvent, EventLimits, parse
from tests.event_strategies import REASONS, events

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
LIMITS = EventLimits(timedelta(minutes=5), timedelta(days=30))


def _stored_as_is(event, topic: str) -> None:  # noqa: ANN001 - the parsed SimpleNamespace
    for name, kind, _ in SCHEMAS[topic][0]:
        value = getattr(event, name)
        if value is None:
            continue
        if kind == "str":
            assert "\x00" not in value and len(value) <= (MAX_TEXT if name in ("text", "notes") else MAX_STR + 40)
            value.encode("utf-8")  # a lone surrogate would raise here, and in PostgreSQL
        elif kind == "float":
            low, high = RANGES.get(name, (-math.inf, math.inf))
            assert math.isfinite(value) and low <= value <= high, (name, value)
        else:
            assert NOW - LIMITS.max_age <= value <= NOW + LIMITS.max_ahead, (name, value)
    for name, allowed in CHECKS[topic]:
        assert getattr(event, name) in allowed


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(events(NOW))
def test_every_generated_event_parses_within_its_ranges_or_is_a_dead_letter_with_a_reason(case) -> None:  # noqa: ANN001
    topic, body = case
    try:
        raw = json.dumps(body).encode()
    except (ValueError, OverflowError):
        return
    try:
        event = parse(topic, None, raw, NOW, LIMITS)
    except BadEvent as exc:
        assert exc.reason in REASONS and str(exc).startswith(exc.reason + ": ")
        return
    _stored_as_is(event, topic)


@pytest.mark.parametrize(("field", "value", "reason"), [
    ("text", "hello\x00world", "invalid_value"), ("text", "\ud800", "invalid_value"),
    ("text", "z" * (MAX_TEXT + 1), "too_long"), ("channel", "sms", None), ("text", "नमस्ते " * 100, None),
])
def test_the_poison_message_of_the_issue_is_a_dead_letter(field: str, value: str, reason: str | None) -> None:
    body = {"event_id": "x", "lead_id": "L", "event_time": NOW.isoformat(), "channel": "sms",
            "direction": "inbound", "text": "hello", field: value}
    if reason is None:
        assert parse("lead.messages", b"L", json.dumps(body).encode(), NOW).lead_id == "L"
        return
    with pytest.raises(BadEvent) as caught:
        parse("lead.messages", b"L", json.dumps(body).encode(), NOW)
    assert caught.value.reason == reason


@pytest.mark.parametrize(("duration", "ok"), [(float("nan"), False), (float("inf"), False), (1e308, False),
                                              (-100_000, False), (-0.5, False), (0, True), (86_400, True)])
def test_durations_are_finite_and_within_a_day(duration: float, ok: bool) -> None:
    raw = json.dumps({"event_id": "x", "lead_id": "L", "event_time": NOW.isoformat(), "action": "session",
                      "duration_s": duration}).encode()
    if ok:
        assert parse("lead.web", None, raw, NOW).duration_s == duration
    else:
        with pytest.raises(BadEvent, match="duration_s"):
            parse("lead.web", None, raw, NOW)


def test_event_times_have_a_late_and_an_early_limit_each_with_its_reason() -> None:
    def at(when: datetime) -> bytes:
        body = {"event_id": "x", "lead_id": "L", "event_time": when.isoformat(), "action": "search"}
        return json.dumps(body).encode()

    assert parse("lead.web", None, at(NOW - timedelta(days=29)), NOW, LIMITS)
    for when, reason in ((NOW - timedelta(days=31), "stale_event_time"), (datetime(1970, 1, 1, tzinfo=UTC),
                                                                           "stale_event_time"),
                         (NOW + timedelta(minutes=6), "future_event_time")):
        with pytest.raises(BadEvent) as caught:
            parse("lead.web", None, at(when), NOW, LIMITS)
        assert caught.value.reason == reason
