"""Request and response models of the alarms API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from care_portal.const import API_NOTE_MAX_CHARS
from hub.alarms.lifecycle import Outcome
from hub.storage.models import AlarmStatus, Severity


class _Public(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, from_attributes=True)


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TimelineEntryPublic(_Public):
    """One fact in an alarm's history (never changed once written)."""

    id: int
    at: datetime
    actor: str = Field(description='who: "user:<username>", "hub:rules", "resident", …')
    kind: str = Field(
        description="transition, event_joined, notification, delivery, reply, note, "
        "condition_cleared, prealarm, cancel_refused"
    )
    from_status: AlarmStatus | None
    to_status: AlarmStatus | None
    detail: dict[str, Any]


class AlarmPublic(_Public):
    """An alarm as the API shows it; times are UTC."""

    id: int
    resident_id: int
    home_id: str
    device_id: str | None
    type: str = Field(description="fall, button, door_night, bathroom_long, inactivity, …")
    severity: Severity
    status: AlarmStatus
    outcome: Outcome | None = Field(description="set when resolved")
    summary: str
    opened_at: datetime
    updated_at: datetime
    event_count: int = Field(description="events that raised or joined this alarm")
    unanswered: bool = Field(description="every escalation round passed and nobody took it")
    short_code: str | None = Field(description='code for SMS replies: "1 <code>"')


class AlarmDetailPublic(AlarmPublic):
    """An alarm with its whole timeline, oldest entry first."""

    timeline: list[TimelineEntryPublic]


class AlarmsPublic(_Public):
    """A page of alarms, newest first, and how many match in all."""

    data: list[AlarmPublic]
    count: int


class TransitionRequest(_Request):
    """Optional body of acknowledge and on-site: a note for the timeline."""

    note: str | None = Field(default=None, max_length=API_NOTE_MAX_CHARS)


class ResolveRequest(_Request):
    """Body of resolve: how it ended, and an optional note."""

    outcome: Outcome
    note: str | None = Field(default=None, max_length=API_NOTE_MAX_CHARS)
