"""View models of the overview page: homes with their devices, latest events, message intake."""

from __future__ import annotations

import enum
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from hub.storage.models import AlarmStatus, DeviceType, Protocol, Severity


class _View(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DeviceState(enum.StrEnum):
    """What the hub last knew of a device's connection."""

    ONLINE = "online"
    OFFLINE = "offline"
    UNKNOWN = "unknown"


class DeviceView(_View):
    """One registered device; times are in the municipality's time zone."""

    id: str
    type: DeviceType
    protocol: Protocol
    room: str | None
    state: DeviceState
    battery: int | None
    battery_low: bool
    last_seen: datetime | None
    test_mode_until: datetime | None


class HomeView(_View):
    """A home with its zone, its residents' short labels and its devices."""

    id: str
    zone: str
    residents: list[str]
    devices: list[DeviceView]


class EventView(_View):
    """A stored sensor event; ``data`` is its JSON, shortened for display."""

    received_at: datetime
    home_id: str
    device_id: str
    kind: str
    data: str


class RejectedMessageView(_View):
    """A message the hub could not accept, with the reason an operator reads."""

    received_at: datetime
    topic: str
    reason: str


class OpenAlarmView(_View):
    """An alarm someone still has to act on; ``opened_at`` is local time."""

    id: int
    resident: str
    home_id: str
    type: str
    severity: Severity
    status: AlarmStatus
    summary: str
    event_count: int
    opened_at: datetime
    age_minutes: int
    unanswered: bool = False


class Overview(_View):
    """Everything the overview page shows, as of ``as_of`` (local time)."""

    as_of: datetime
    alarms: list[OpenAlarmView]
    alarms_total: int
    homes: list[HomeView]
    homes_total: int
    events: list[EventView]
    discovered_devices: int
    rejected_messages: int
    latest_rejected: list[RejectedMessageView]
