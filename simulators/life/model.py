"""The resident model's vocabulary: homes, rooms, devices, routines, and what a run sends.

Everything here is plain data. ``routine``, ``incidents``, ``faults`` and ``simulation`` turn
it into an ordered list of :class:`Delivery`; ``runner`` is the only part that touches MQTT.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from devices.events import EventKind
from hub.storage.models import DeviceType, Protocol
from simulators.payloads import MqttMessage

_DURATION = re.compile(r"^\s*(?:(\d+)d)?\s*(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+)s)?\s*$")


def parse_duration(value: Any) -> Any:
    """``"1d"``, ``"2h30m"``, ``"45m"``, ``"90s"`` or a number of seconds; else left to pydantic.

    Scenario files are written by people, who think in minutes and hours, not ISO 8601.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return timedelta(seconds=value)
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match and any(match.groups()):
            d, h, m, s = (int(g) if g else 0 for g in match.groups())
            return timedelta(days=d, hours=h, minutes=m, seconds=s)
        raise ValueError(f"{value!r} is not a duration (write e.g. 45m, 2h, 1h30m, 1d, 90s)")
    return value


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


def format_duration(delta: timedelta) -> str:
    """``1h05m``, ``45m``, ``12s``: short, for tables."""
    total = round(delta.total_seconds())
    sign = "-" if total < 0 else ""
    total = abs(total)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{sign}{days}d{hours:02d}h{minutes:02d}m"
    if hours:
        return f"{sign}{hours}h{minutes:02d}m"
    if minutes:
        return f"{sign}{minutes}m{seconds:02d}s" if seconds else f"{sign}{minutes}m"
    return f"{sign}{seconds}s"


class Room(enum.StrEnum):
    """The rooms of a standard flat; their ``kind`` is what the rules look at."""

    HALL = "hall"
    KITCHEN = "kitchen"
    LIVING = "living"
    BATHROOM = "bathroom"
    BEDROOM = "bedroom"

    @property
    def kind(self) -> str:
        """The room kind the hub stores (``entrance`` and ``bathroom`` matter to the rules)."""
        return "entrance" if self is Room.HALL else self.value


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """One device of a standard home: ``key`` is unique in the home (``m-bath``, ``door``...)."""

    key: str
    type: DeviceType
    room: Room


# Every simulated home has the same kit: a fall radar in the bedroom, a pendant button, the
# entrance door contact and a motion sensor in each room.
HOME_DEVICES: tuple[DeviceSpec, ...] = (
    DeviceSpec("fall", DeviceType.FALL_SENSOR, Room.BEDROOM),
    DeviceSpec("button", DeviceType.ALARM_BUTTON, Room.LIVING),
    DeviceSpec("door", DeviceType.DOOR_CONTACT, Room.HALL),
    DeviceSpec("m-hall", DeviceType.MOTION_SENSOR, Room.HALL),
    DeviceSpec("m-kitchen", DeviceType.MOTION_SENSOR, Room.KITCHEN),
    DeviceSpec("m-living", DeviceType.MOTION_SENSOR, Room.LIVING),
    DeviceSpec("m-bath", DeviceType.MOTION_SENSOR, Room.BATHROOM),
    DeviceSpec("m-bed", DeviceType.MOTION_SENSOR, Room.BEDROOM),
)
DEVICE_KEYS: frozenset[str] = frozenset(d.key for d in HOME_DEVICES)
MOTION_KEY: dict[Room, str] = {d.room: d.key for d in HOME_DEVICES if d.key.startswith("m-")}


def device_spec(key: str) -> DeviceSpec:
    for spec in HOME_DEVICES:
        if spec.key == key:
            return spec
    raise KeyError(f"no device {key!r} in a simulated home (devices: {sorted(DEVICE_KEYS)})")


class Routine(BaseModel):
    """A resident's habits; every random choice of a day is drawn inside these bounds.

    Defaults describe an ordinary, fairly active person living alone with two home-care visits
    a day. Local times of day; durations as ``45m``/``2h``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    wake_earliest: time = time(6, 30)
    wake_latest: time = time(8, 30)
    bed_earliest: time = time(21, 30)
    bed_latest: time = time(23, 0)
    night_bathroom_visits_max: int = Field(default=2, ge=0, le=6)
    night_bathroom_minutes_min: int = Field(default=3, ge=1)
    night_bathroom_minutes_max: int = Field(default=12, ge=1, le=40)
    lunch_at: time = time(12, 30)
    dinner_at: time = time(17, 0)
    meal_jitter: Duration = timedelta(minutes=30)
    # home-care visits (hjemmetjenesten): local times, each +- jitter, each lasting 15-40 min
    home_care_visits: tuple[time, ...] = (time(9, 0), time(19, 30))
    home_care_jitter: Duration = timedelta(minutes=30)
    outing_probability: float = Field(default=0.5, ge=0, le=1)
    outing_earliest: time = time(10, 0)
    outing_latest: time = time(15, 30)
    outing_minutes_min: int = Field(default=40, ge=5)
    outing_minutes_max: int = Field(default=150, ge=5)
    # how long the resident stays in a room before moving on, and how often a PIR re-triggers
    room_minutes_min: int = Field(default=10, ge=1)
    room_minutes_max: int = Field(default=75, ge=1)
    retrigger_minutes_min: int = Field(default=4, ge=1)
    retrigger_minutes_max: int = Field(default=20, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> Routine:
        pairs = (
            ("wake_earliest", "wake_latest"),
            ("bed_earliest", "bed_latest"),
            ("outing_earliest", "outing_latest"),
            ("night_bathroom_minutes_min", "night_bathroom_minutes_max"),
            ("outing_minutes_min", "outing_minutes_max"),
            ("room_minutes_min", "room_minutes_max"),
            ("retrigger_minutes_min", "retrigger_minutes_max"),
        )
        for low, high in pairs:
            if getattr(self, low) > getattr(self, high):
                raise ValueError(f"{low} must not be after/above {high}")
        if self.wake_latest >= self.bed_earliest:
            raise ValueError("wake_latest must be before bed_earliest")
        return self


class ResidentSpec(BaseModel):
    """A simulated resident and their home: ``key`` names them in scenarios and device ids."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,30}$")
    protocol: Protocol = Protocol.NATIVE
    routine: Routine = Routine()

    @property
    def home_id(self) -> str:
        return f"h-{self.key}"

    def device_id(self, key: str) -> str:
        """The device's id (native ``<device_id>``) and Zigbee2MQTT friendly name."""
        device_spec(key)
        return f"{self.key}-{key}"


# --- what a run produces --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeviceEvent:
    """Something a device senses at ``at`` (UTC): the resident's life seen by the sensors.

    ``fields``: ``open`` (door), ``motion`` (motion), ``action`` (button), ``fall_status``
    (fall: ``fall`` or, from a Zigbee2MQTT radar, ``maybe_fall``). ``why`` says what the
    resident was doing, for people reading a timeline.
    """

    at: datetime
    resident: str
    device: str
    kind: EventKind
    fields: tuple[tuple[str, object], ...] = ()
    why: str = ""

    def field(self, name: str) -> object:
        return dict(self.fields).get(name)


@dataclass(frozen=True, slots=True)
class AbsenceRegistered:
    """Staff register the resident as absent until ``until`` (hospital, holiday)."""

    at: datetime
    resident: str
    until: datetime


@dataclass(frozen=True, slots=True)
class BrokerRestart:
    """The MQTT broker is restarted at ``at`` (graceful stop, start on the same port)."""

    at: datetime


Happening = DeviceEvent | AbsenceRegistered


@dataclass(frozen=True, slots=True)
class Publish:
    """An MQTT message a home sends at ``at``; ``note`` says why (event, heartbeat, retry...)."""

    at: datetime
    resident: str
    device: str
    message: MqttMessage
    note: str = ""


@dataclass(frozen=True, slots=True)
class Control:
    """Something the runner does besides publishing: restart the broker, register absence."""

    at: datetime
    action: BrokerRestart | AbsenceRegistered


Delivery = Publish | Control
