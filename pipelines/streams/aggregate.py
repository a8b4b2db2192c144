"""Per-lead windowed engagement: the pure state machine behind the stream agent (no I/O, unit-tested).

A lead's state is a JSON-able dict (it lives in the Faust table `lead_to_engagement` and its changelog):
hourly buckets for the last 48 hours, daily buckets for the last 32 days, first and last event time, the WhatsApp
reply-latency bookkeeping, and, per day bucket, a 64-bit hash of the id of every event counted in it:
de-duplication travels with the counts it protects (a replay after a crash cannot double count) and is exact for as
long as the counts are kept (a duplicate of an event older than the buckets can no longer change any feature).

Windows are measured back from the lead's latest event: 1 d = that hour and the 23 before it, 7 d / 30 d = that UTC
day and the 6 / 29 before it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from hashlib import blake2b
from typing import Any

from pipelines.streams.records import (
    TOPIC_CALLS,
    TOPIC_EMAIL,
    TOPIC_MESSAGES,
    TOPIC_WEB,
    LeadEvent,
)

FAMILIES = ("listing_views", "searches", "saved_listings", "emi_calculator_uses", "sessions", "time_on_site_s",
            "emails_sent", "emails_opened", "emails_clicked", "whatsapp_in", "whatsapp_out", "calls",
            "form_submissions")
WEB_FAMILY = {"listing_view": "listing_views", "search": "searches", "saved_listing": "saved_listings",
              "emi_calculator": "emi_calculator_uses", "session": "sessions", "form_submission": "form_submissions"}
EMAIL_FAMILY = {"sent": "emails_sent", "opened": "emails_opened", "clicked": "emails_clicked"}
HOURS_KEPT, DAYS_KEPT = 48, 32
FEATURE_COLUMNS = [f"{family}_{w}" for family in FAMILIES for w in ("1d", "7d", "30d")] + [
    "whatsapp_reply_latency_s_30d", "first_touch_ts", "last_event_ts"]


def new_state() -> dict[str, Any]:
    return {"h": {}, "d": {}, "first": None, "last": None, "ids": {}, "pending_out": None, "lat": {}}


def upgrade_state(state: dict[str, Any] | None) -> dict[str, Any] | None:
    """A state written by an earlier version, in today's shape (None stays None)."""
    if state is not None and isinstance(state.get("ids"), list):
        state["ids"] = {}  # event ids were one list per lead; their days are unknown, so de-duplication restarts
    return state


def increments(topic: str, event: LeadEvent) -> dict[str, float]:
    """What an event adds to which family."""
    if topic == TOPIC_WEB:
        family = WEB_FAMILY[event.action]
        if family == "sessions":
            return {"sessions": 1, "time_on_site_s": float(event.duration_s or 0.0)}
        return {family: 1}
    if topic == TOPIC_EMAIL:
        return {EMAIL_FAMILY[event.action]: 1}
    if topic == TOPIC_MESSAGES:
        return {"whatsapp_in" if event.direction == "inbound" else "whatsapp_out": 1}
    if topic == TOPIC_CALLS:
        return {"calls": 1}
    return {}  # CRM status changes do not count as engagement; they become labels


def apply_event(state: dict[str, Any], topic: str, event: LeadEvent, prune: bool = True) -> bool:
    """Fold one event into the state; False (and no change) if this event id was counted already.

    `prune=False` leaves dropping the buckets that fell out of the kept windows to one `prune(state)` call after a
    batch of events (the stream agent does so): the same final state, since pruning only ever drops buckets the
    feature row no longer reads, without a pass over every bucket per event.
    """
    t = event.event_time.timestamp()
    day = str(int(t // 86400))
    seen = state["ids"].setdefault(day, [])
    digest = blake2b(event.event_id.encode(), digest_size=8).hexdigest()
    if digest in seen:
        return False
    seen.append(digest)
    hour = str(int(t // 3600))
    for family, amount in increments(topic, event).items():
        bucket = state["h"].setdefault(hour, {})
        bucket[family] = bucket.get(family, 0) + amount
        bucket = state["d"].setdefault(day, {})
        bucket[family] = bucket.get(family, 0) + amount
    if topic == TOPIC_MESSAGES:
        if event.direction == "outbound":
            if state["pending_out"] is None:
                state["pending_out"] = t  # the first unanswered message starts the clock
        elif state["pending_out"] is not None and t >= state["pending_out"]:
            latency = state["lat"].setdefault(day, [0.0, 0])
            latency[0] += t - state["pending_out"]
            latency[1] += 1
            state["pending_out"] = None
    state["first"] = t if state["first"] is None else min(state["first"], t)
    state["last"] = t if state["last"] is None else max(state["last"], t)
    if prune:
        prune_state(state)
    return True


def prune_state(state: dict[str, Any]) -> None:
    """Drop the buckets (and their event ids) older than the kept windows, counted back from the latest event."""
    last = state["last"]
    oldest_hour, oldest_day = int(last // 3600) - HOURS_KEPT, int(last // 86400) - DAYS_KEPT
    for key in [k for k in state["h"] if int(k) <= oldest_hour]:
        del state["h"][key]
    for name in ("d", "lat", "ids"):
        for key in [k for k in state[name] if int(k) <= oldest_day]:
            del state[name][key]


# a row with every count zero, in column order, copied for each row; per family its three columns and their type
_ZERO_ROW: dict[str, Any] = {f"{family}_{w}": 0.0 if family == "time_on_site_s" else 0
                             for family in FAMILIES for w in ("1d", "7d", "30d")}
_ZERO_ROW.update(whatsapp_reply_latency_s_30d=None, first_touch_ts=None, last_event_ts=None, event_timestamp=None)
_COLUMNS_OF = {family: (f"{family}_1d", f"{family}_7d", f"{family}_30d", float if family == "time_on_site_s" else int)
               for family in FAMILIES}


def feature_row(state: dict[str, Any]) -> dict[str, Any]:
    """The lead_engagement feature row as of the lead's latest event (column names of offline.lead_engagement)."""
    last = state["last"]
    ref_hour, ref_day = int(last // 3600), int(last // 86400)
    day1: dict[str, float] = {}
    day7: dict[str, float] = {}
    day30: dict[str, float] = {}
    for k, bucket in state["h"].items():
        if ref_hour - 24 < int(k) <= ref_hour:
            for family, n in bucket.items():
                day1[family] = day1.get(family, 0) + n
    for k, bucket in state["d"].items():
        age = ref_day - int(k)
        if 0 <= age < 30:
            for family, n in bucket.items():
                day30[family] = day30.get(family, 0) + n
                if age < 7:
                    day7[family] = day7.get(family, 0) + n
    row = _ZERO_ROW.copy()
    for sums, index in ((day1, 0), (day7, 1), (day30, 2)):
        for family, n in sums.items():
            columns = _COLUMNS_OF[family]
            row[columns[index]] = columns[3](n)
    lat = [v for k, v in state["lat"].items() if ref_day - 30 < int(k) <= ref_day]
    n = sum(v[1] for v in lat)
    row["whatsapp_reply_latency_s_30d"] = sum(v[0] for v in lat) / n if n else None
    row["first_touch_ts"] = state["first"]
    row["last_event_ts"] = last
    row["event_timestamp"] = datetime.fromtimestamp(last, tz=UTC)
    return row
