"""Hypothesis strategies for stream events of every topic with arbitrary values (the unit property over `parse` and
the integration property through a real worker and the stores use the same ones)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import strategies as st

from pipelines.streams.parse import CHECKS, MAX_STR, MAX_TEXT, SCHEMAS
from pipelines.streams.schema import SOURCE_TOPICS

REASONS = {"unparseable", "missing_field", "invalid_value", "future_event_time", "stale_event_time", "too_long",
           "unknown_field", "key_mismatch"}
LEAD = "L-1"  # the lead of every generated event whose lead_id was not replaced

texts = st.one_of(st.text(max_size=30), st.text(alphabet=st.characters(codec=None), max_size=30),
                  st.sampled_from(["hello\x00world", "\ud800", "x" * (MAX_STR + 1), "y" * (MAX_TEXT + 1), ""]))
numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**400, 10**400),
                    st.sampled_from([1e308, -100_000.0, 86_400.0, 86_400.5, 0.0]))
anything_but_time = st.one_of(st.none(), st.booleans(), texts, numbers, st.lists(st.integers(), max_size=2))


def times(now: datetime) -> st.SearchStrategy[str]:
    """Event times from any year, and a few near the limits around `now`."""
    return st.one_of(st.datetimes(timezones=st.sampled_from([UTC, None])).map(lambda d: d.isoformat()),
                     st.sampled_from([(now - timedelta(days=29)).isoformat(), (now + timedelta(minutes=4)).isoformat(),
                                      "1970-01-01T00:00:00Z", "not a time"]))


def fair_values(now: datetime) -> dict[str, st.SearchStrategy]:
    """Values inside the declared ranges (any text of real characters, durations of 0 to a day, times of the last
    two years), to generate events that must land."""
    return {"str": st.text(alphabet=st.characters(exclude_categories=("Cs",), exclude_characters="\x00/"),
                           min_size=1, max_size=60),
            "float": st.floats(0, 86_400),
            "datetime": st.datetimes(min_value=(now - timedelta(days=700)).replace(tzinfo=None),
                                     max_value=now.replace(tzinfo=None), timezones=st.just(UTC)).map(
                lambda d: d.isoformat())}


@st.composite
def events(draw: st.DrawFn, now: datetime, fair: bool = False) -> tuple[str, dict]:
    """A valid event of a topic (lead `LEAD`) with one to three fields replaced by arbitrary values or left out,
    and now and then an unknown field; `fair`: replaced by values inside their ranges only (lead and event ids
    kept)."""
    topic = draw(st.sampled_from(SOURCE_TOPICS))
    fields, _ = SCHEMAS[topic]
    allowed = dict(CHECKS[topic])
    valid = {"str": LEAD, "float": 12.5, "datetime": (now - timedelta(hours=1)).isoformat()}
    body = {name: sorted(allowed[name])[0] if name in allowed else valid[kind] for name, kind, _ in fields
            if name != "tenant"}
    if fair:
        replaceable = [f for f in fields if f[0] not in ("lead_id", "event_id", "tenant")]
        for name, kind, _optional in draw(st.lists(st.sampled_from(replaceable), min_size=1, max_size=3, unique=True)):
            body[name] = draw(st.sampled_from(sorted(allowed[name])) if name in allowed else fair_values(now)[kind])
        return topic, body
    for name, kind, _optional in draw(st.lists(st.sampled_from(fields), min_size=1, max_size=3, unique=True)):
        typed = {"str": texts, "float": numbers, "datetime": times(now)}[kind]
        choices = [typed, typed, anything_but_time] + (
            [st.sampled_from(sorted(allowed[name]))] if name in allowed else [])
        if name == "tenant":
            choices.append(st.sampled_from(["acme", "default"]))
        if draw(st.integers(0, 9)) == 0:
            body.pop(name, None)  # a field left out
        else:
            body[name] = draw(st.one_of(*choices))
    if draw(st.integers(0, 19)) == 0:
        body[draw(st.text(min_size=1, max_size=8))] = draw(anything_but_time)  # an unknown field, now and then
    return topic, body
