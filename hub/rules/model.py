"""The rules' vocabulary: what they see (context, observations) and what they decide.

Everything here is plain data. ``hub/rules/engine.py`` is the pure logic;
``hub/rules/service.py`` is the adapter that loads these from the database and applies decisions.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from hub.rules.config import RuleConfig
from hub.storage.models import DeviceType, Severity


class AlarmType(enum.StrEnum):
    FALL = "fall"
    BUTTON = "button"
    DOOR_NIGHT = "door_night"
    BATHROOM_LONG = "bathroom_long"
    INACTIVITY = "inactivity"
    DEVICE_OFFLINE = "device_offline"
    LOW_BATTERY = "low_battery"
    TAMPER = "tamper"


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """A registered device of the resident's home, as the rules need it."""

    id: str
    type: DeviceType
    room_kind: str | None  # bedroom, bathroom, entrance, living, kitchen, other; None = unknown
    supervision_interval_s: int
    last_seen_at: datetime | None
    online: bool | None
    battery: int | None
    tamper: bool | None
    test_mode_until: datetime | None


@dataclass(frozen=True, slots=True)
class HomeContext:
    """Everything about one resident that the rules may read (fresh from the database)."""

    resident_id: int
    home_id: str
    devices: tuple[DeviceInfo, ...]
    absence_until: datetime | None
    config: RuleConfig
    tz: ZoneInfo

    def device(self, device_id: str) -> DeviceInfo | None:
        return next((d for d in self.devices if d.id == device_id), None)


@dataclass(frozen=True, slots=True)
class Observation:
    """One stored sensor event or status change of a device of this home.

    ``kind`` is fall, door, motion, button or status; ``data`` holds the event's fields
    (open, motion, action, fall_state, confidence, battery, tamper, rssi, online).
    ``at`` is when the hub received it (the hub's clock): timers and times of day use it.
    ``ts`` is the device's own time of the event (None for Zigbee2MQTT): the door rule uses it
    only to put door and motion events that arrived out of order back in order.
    """

    device_id: str
    kind: str
    at: datetime
    data: dict[str, Any]
    ts: datetime | None = None


# ---- decisions -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RaiseAlarm:
    """Open an alarm of ``type`` for the resident, or join the open one of that type."""

    type: AlarmType
    severity: Severity
    summary: str
    device_id: str | None = None


@dataclass(frozen=True, slots=True)
class CancelAlarm:
    """Close the open alarm of ``type`` as cancelled (e.g. the resident's cancel in time)."""

    type: AlarmType
    reason: str


@dataclass(frozen=True, slots=True)
class ConditionCleared:
    """The condition behind an open alarm is gone (device back online, battery replaced).

    Recorded in that alarm's timeline; a person still resolves it.
    """

    type: AlarmType
    device_id: str | None
    note: str


@dataclass(frozen=True, slots=True)
class Prealarm:
    """Warn the resident at home (feedback topic) that ``type`` fires at ``fires_at`` unless
    there is activity or a button press."""

    type: AlarmType
    fires_at: datetime


@dataclass(frozen=True, slots=True)
class PrealarmCancelled:
    type: AlarmType
    reason: str


@dataclass(frozen=True, slots=True)
class Note:
    """Something worth recording that is not an alarm (e.g. a radar's ``maybe_fall``)."""

    text: str
    device_id: str | None = None


Decision = RaiseAlarm | CancelAlarm | ConditionCleared | Prealarm | PrealarmCancelled | Note


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The result of one evaluation: the new state, what to do, and when to look again."""

    state: dict[str, Any]
    decisions: tuple[Decision, ...] = field(default=())
    next_due_at: datetime | None = None
