"""Folding one batch of stream messages into the lead table's state: parse, consent and erasure checks, de-duplicate,
update each touched lead once, and snapshot what the batch's landing writes (pipelines/streams/app.py lands it).

Pure logic over the messages, the consent cache and the table's store: no broker, no metrics (unit-tested alone).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from pipelines.streams.aggregate import apply_event, feature_row, new_state, prune_state, upgrade_state
from pipelines.streams.parse import DEFAULT_LIMITS, BadEvent, EventLimits, parse
from pipelines.streams.records import TOPIC_CALLS, TOPIC_CRM, TOPIC_MESSAGES
from pipelines.streams.sinks import LABEL_OF_STATUS, Batch


@dataclass
class Folded:
    """One batch, folded into the table's state: everything its landing writes, snapshotted."""

    messages: list
    batch: Batch = field(default_factory=Batch)
    dead: list = field(default_factory=list)                 # (message, reason, detail)
    changelog: list = field(default_factory=list)            # (key, partition, state as JSON bytes)
    event_times: list = field(default_factory=list)
    per_topic: Counter = field(default_factory=Counter)
    duplicates: int = 0
    erased: int = 0
    minors: int = 0
    sources: list = field(default_factory=list)  # (message, lead id, event id) of every event folded into `batch`


def fold(messages: list, consent, table, now: datetime,  # noqa: ANN001
         limits: EventLimits = DEFAULT_LIMITS) -> Folded:
    """Parse, check consent, de-duplicate and update each touched lead's state (in `table`) once."""
    out = Folded(messages)
    parsed = []
    for msg in messages:
        out.per_topic[msg.topic] += 1
        try:
            parsed.append((msg, parse(msg.topic, msg.key, msg.value, now, limits)))
        except BadEvent as exc:
            out.dead.append((msg, exc.reason, str(exc)))
    touched, partition_of = {}, {}
    if consent.prune:  # leads erased since the last batch: their state leaves the table (tombstoned by the erasure)
        consent.prune = False
        for key in [k for k in list(table) if k.decode() not in consent.known]:
            del table[key]
    erased, tokens, minors = consent.erased, {}, getattr(consent, "minors", set())
    for msg, event in parsed:
        if erased:
            token = tokens.get(event.lead_id) or tokens.setdefault(event.lead_id, consent.token(event.lead_id))
            if token in erased and event.event_time.timestamp() <= erased[token]:
                out.erased += 1  # an old event of an erased lead (a replay): counted, never stored or dead-lettered
                continue
        if event.lead_id in minors:
            out.minors += 1  # a child without parental consent is not tracked (DPDP Act s.9): counted, not stored
            continue
        if event.lead_id not in consent.known:
            out.dead.append((msg, "unknown_lead", f"lead {event.lead_id!r} has no consent on record"))
            continue
        topic, key = msg.topic, event.lead_id.encode()
        lead_state = touched.get(key)
        if lead_state is None:
            lead_state = touched[key] = upgrade_state(table.get(key)) or new_state()
        partition_of[key] = msg.partition
        out.sources.append((msg, event.lead_id, event.event_id))
        out.event_times.append(event.event_time.timestamp())
        # a duplicate still rewrites the lead's row, label and text (all idempotent): after a crash the changelog
        # can be ahead of the stores, and the replayed duplicates are what brings the stores level again
        if not apply_event(lead_state, topic, event, prune=False):
            out.duplicates += 1
        if topic == TOPIC_CRM and event.status in LABEL_OF_STATUS:
            out.batch.labels.append((event.lead_id, event.event_time, LABEL_OF_STATUS[event.status]))
        elif topic in (TOPIC_MESSAGES, TOPIC_CALLS):
            text = event.text if topic == TOPIC_MESSAGES else event.notes
            if text:
                kind = event.channel if topic == TOPIC_MESSAGES else "call_note"
                out.batch.messages.append((event.event_id, event.lead_id, kind, event.direction, event.event_time,
                                           text))
    for key, lead_state in touched.items():
        if lead_state["last"] is not None:
            prune_state(lead_state)  # once per lead and batch rather than per event (same state: aggregate.py)
            out.batch.rows[key.decode()] = feature_row(lead_state)
        table[key] = lead_state
        out.changelog.append((key, partition_of[key], json.dumps(lead_state, separators=(",", ":")).encode()))
    return out
