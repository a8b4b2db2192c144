"""Lead event records, one topic per event family. Shared by the stream workers and the simulator.

Every event carries `event_id` (unique, for de-duplication), `lead_id` (the message key, so a lead's events stay on
one partition) and `event_time` (ISO 8601, UTC); `tenant` names the lead's tenant (absent: the default tenant;
compliance/tenants.py), and the worker stores the lead as `tenant/lead_id`. Payloads are JSON.
"""

from __future__ import annotations

from datetime import datetime

import faust

from pipelines.streams.schema import (  # noqa: F401 - re-exported: records and names travel together
    CRM_STATUSES,
    DIRECTIONS,
    EMAIL_ACTIONS,
    MESSAGE_CHANNELS,
    SOURCE_TOPICS,
    TOPIC_CALLS,
    TOPIC_CRM,
    TOPIC_DEADLETTER,
    TOPIC_EMAIL,
    TOPIC_MESSAGES,
    TOPIC_WEB,
    WEB_ACTIONS,
)


class LeadEvent(faust.Record, abstract=True, serializer="json", isodates=True, validation=True):
    event_id: str
    lead_id: str
    event_time: datetime


class WebEvent(LeadEvent, serializer="json", isodates=True, validation=True):
    action: str                      # one of WEB_ACTIONS
    duration_s: float = 0.0          # for action == "session": seconds on site
    listing_id: str | None = None
    tenant: str | None = None


class EmailEvent(LeadEvent, serializer="json", isodates=True, validation=True):
    action: str                      # one of EMAIL_ACTIONS
    campaign: str | None = None
    tenant: str | None = None


class MessageEvent(LeadEvent, serializer="json", isodates=True, validation=True):
    channel: str                     # one of MESSAGE_CHANNELS
    direction: str                   # one of DIRECTIONS
    text: str = ""
    tenant: str | None = None


class CallEvent(LeadEvent, serializer="json", isodates=True, validation=True):
    direction: str                   # one of DIRECTIONS
    duration_s: float = 0.0
    notes: str = ""
    tenant: str | None = None


class CrmStatusEvent(LeadEvent, serializer="json", isodates=True, validation=True):
    status: str                      # one of CRM_STATUSES; "converted" and "lost" become labels
    broker_id: str | None = None
    tenant: str | None = None


RECORD_FOR_TOPIC: dict[str, type[LeadEvent]] = {
    TOPIC_WEB: WebEvent, TOPIC_EMAIL: EmailEvent, TOPIC_MESSAGES: MessageEvent, TOPIC_CALLS: CallEvent,
    TOPIC_CRM: CrmStatusEvent,
}
ALLOWED = {
    (TOPIC_WEB, "action"): WEB_ACTIONS, (TOPIC_EMAIL, "action"): EMAIL_ACTIONS,
    (TOPIC_MESSAGES, "channel"): MESSAGE_CHANNELS, (TOPIC_MESSAGES, "direction"): DIRECTIONS,
    (TOPIC_CALLS, "direction"): DIRECTIONS, (TOPIC_CRM, "status"): CRM_STATUSES,
}
