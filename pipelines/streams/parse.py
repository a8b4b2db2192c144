"""Message bytes -> a validated lead event, or the reason it is bad (the dead-letter reason codes).

The schemas are the `faust.Record`s in `records.py` (field names, types, defaults); this reads them once and then
validates plain `json.loads` output against them, about 3x faster than building a Record per event (measured in
bench/streams.py's hot loop).

Every value is checked against its declared range before anything is written, so an event the stores would refuse
(or store as nonsense) is a dead letter with its reason, never a retried batch:
- strings: no NUL character and no lone surrogate (PostgreSQL refuses both), at most `MAX_TEXT` characters for a
  message text or call notes and `MAX_STR` for every other string (`too_long`; nothing is truncated);
- numbers: finite and inside `RANGES` (a duration is 0 to 86,400 s);
- the event time: at most `EventLimits.max_ahead` after now (`future_event_time`) and at most `max_age` before it
  (`stale_event_time`), both configurable (LEADSCORE_EVENT_MAX_AHEAD_S, LEADSCORE_EVENT_MAX_AGE_DAYS);
- fields the record does not declare are refused (`unknown_field`): a producer's typo is not silently dropped.
A message without a key is taken, keyed by its lead (the worker folds by lead id; order across partitions is the
producer's to keep by keying its messages).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from compliance.tenants import DEFAULT, SEPARATOR
from compliance.tenants import NAME as TENANT_NAME
from pipelines.streams.records import ALLOWED, RECORD_FOR_TOPIC

FUTURE_SLACK = timedelta(minutes=5)
MAX_AGE = timedelta(days=730)
MAX_TEXT = 8_000  # characters of a message text or call notes
MAX_STR = 200  # characters of any other string (ids, campaign, listing, broker, tenant)
LONG_TEXT = frozenset({"text", "notes"})
RANGES = {"duration_s": (0.0, 86_400.0)}  # inclusive bounds of numeric fields


@dataclass(frozen=True)
class EventLimits:
    """How far from now an event time may be (`infra.config.Settings.event_limits` reads the overrides)."""

    max_ahead: timedelta = FUTURE_SLACK
    max_age: timedelta = MAX_AGE


DEFAULT_LIMITS = EventLimits()


class BadEvent(ValueError):
    """An event that cannot be processed; `reason` is the dead-letter reason code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def _kind(annotation: Any) -> tuple[str, bool]:
    """('str' | 'float' | 'datetime', optional) of a Record field's annotation."""
    optional = type(None) in getattr(annotation, "__args__", ())
    base = next((a for a in getattr(annotation, "__args__", (annotation,)) if a is not type(None)), annotation)
    return {str: "str", float: "float", datetime: "datetime"}[base], optional


SCHEMAS: dict[str, tuple[list[tuple[str, str, bool]], dict[str, Any]]] = {
    topic: ([(name, *_kind(ann)) for name, ann in record._options.fields.items()], dict(record._options.defaults))
    for topic, record in RECORD_FOR_TOPIC.items()
}
# the record's fields, and Faust's own type tag (`__faust`) that a faust.Record's dumps() adds
NAMES = {topic: frozenset(name for name, _, _ in fields) | {"__faust"} for topic, (fields, _) in SCHEMAS.items()}
STR_LIMIT = {name: MAX_TEXT if name in LONG_TEXT else MAX_STR for fields, _ in SCHEMAS.values() for name, *_ in fields}
CHECKS = {topic: [(name, frozenset(allowed)) for (t, name), allowed in ALLOWED.items() if t == topic]
          for topic in RECORD_FOR_TOPIC}


def _refuse_text(name: str, value: str) -> None:
    """BadEvent naming what is wrong with a string that failed the fast check in `parse`."""
    if len(value) > STR_LIMIT[name]:
        raise BadEvent("too_long", f"{name} has {len(value)} characters, more than {STR_LIMIT[name]}")
    if "\x00" in value:
        raise BadEvent("invalid_value", f"{name} holds a NUL character, which no store takes")
    raise BadEvent("invalid_value", f"{name} holds a lone surrogate (\\ud800-\\udfff): not text")


def _not_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def parse(topic: str, key: bytes | None, raw: bytes | None, now: datetime | None = None,
          limits: EventLimits = DEFAULT_LIMITS) -> SimpleNamespace:
    """Bytes of a message on `topic` -> an event with the record's fields as attributes, or BadEvent."""
    try:
        data = json.loads((raw or b"").decode())  # a str: json.loads would first guess the encoding of bytes
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadEvent("unparseable", f"not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise BadEvent("unparseable", "not a JSON object")
    fields, defaults = SCHEMAS[topic]
    if not data.keys() <= NAMES[topic]:
        unknown = sorted(str(k) for k in data.keys() - NAMES[topic])
        raise BadEvent("unknown_field", f"field(s) {', '.join(unknown)[:200]} are not in {topic}'s record")
    out: dict[str, Any] = {}
    for name, kind, optional in fields:
        value = data.get(name)
        if value is None:
            if name in defaults or optional:
                out[name] = defaults.get(name)
                continue
            raise BadEvent("missing_field", f"missing required field {name!r}")
        if kind == "str":
            if not isinstance(value, str):
                raise BadEvent("invalid_value", f"{name} must be a string, not {type(value).__name__}")
            if len(value) > STR_LIMIT[name] or "\x00" in value or (not value.isascii() and _not_text(value)):
                _refuse_text(name, value)
        elif kind == "float":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise BadEvent("invalid_value", f"{name} must be a number, not {str(value)[:50]!r}")
            try:
                value = float(value)
            except OverflowError:  # an integer beyond a float's range
                raise BadEvent("invalid_value", f"{name} is too large a number") from None
            low, high = RANGES.get(name, (-math.inf, math.inf))
            if not math.isfinite(value) or not low <= value <= high:
                raise BadEvent("invalid_value", f"{name}={value!r} is outside [{low:g}, {high:g}]")
        else:
            try:
                value = datetime.fromisoformat(value)
            except (TypeError, ValueError):
                raise BadEvent("invalid_value", f"{name} must be an ISO 8601 time, not {str(value)[:50]!r}") from None
            if value.tzinfo is None:
                value = value.replace(tzinfo=UTC)
        out[name] = value
    for name, allowed in CHECKS[topic]:
        if out[name] not in allowed:
            raise BadEvent("invalid_value", f"{name}={out[name]!r} is not one of {sorted(allowed)}")
    if not out["event_id"] or not out["lead_id"]:
        raise BadEvent("missing_field", "event_id and lead_id must not be empty")
    now = now or datetime.now(UTC)
    if out["event_time"] > now + limits.max_ahead:
        raise BadEvent("future_event_time", f"event_time {out['event_time'].isoformat()} is in the future")
    if out["event_time"] < now - limits.max_age:
        raise BadEvent("stale_event_time", f"event_time {out['event_time'].isoformat()} is more than "
                                           f"{limits.max_age.days} days old")
    if key is not None and key.decode(errors="replace") != out["lead_id"]:
        raise BadEvent("key_mismatch", f"message key {key!r} is not the lead_id {out['lead_id']!r}")
    if SEPARATOR in out["lead_id"]:
        raise BadEvent("invalid_value", f"lead_id {out['lead_id']!r} holds '{SEPARATOR}', which is reserved for "
                                        "tenants")
    tenant = out.get("tenant")
    if tenant is not None and tenant != DEFAULT:  # the lead is stored as tenant/lead_id, and so is its event id
        if not TENANT_NAME.fullmatch(tenant):
            raise BadEvent("invalid_value", f"tenant {tenant!r} is not a tenant name (1-32 of a-z, 0-9, _ and -)")
        out["lead_id"] = f"{tenant}{SEPARATOR}{out['lead_id']}"
        out["event_id"] = f"{tenant}{SEPARATOR}{out['event_id']}"
    return SimpleNamespace(**out)
