"""Incidents: what goes wrong in a resident's life, and the sensor events each one causes.

An incident takes over the resident for a while: the routine's events in that span are dropped
(a resident on the floor does not walk to the kitchen) and the incident's own events go in.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from devices.events import EventKind
from simulators.life.model import (
    MOTION_KEY,
    AbsenceRegistered,
    DeviceEvent,
    Duration,
    Happening,
    Room,
)


class _Incident(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,40}$", description="Named by expectations.")
    resident: str
    at: AwareDatetime


class Fall(_Incident):
    """The resident falls at ``at`` and lies still until help comes ``lie_for`` later.

    ``maybe_fall_first``: a Zigbee2MQTT radar first reports ``maybe_fall`` 20 s before.
    """

    type: Literal["fall"] = "fall"
    maybe_fall_first: bool = False
    lie_for: Duration = timedelta(minutes=25)


class MaybeFall(_Incident):
    """A radar reports ``maybe_fall`` but the resident was only bending down: no fall."""

    type: Literal["maybe_fall"] = "maybe_fall"


class ButtonPress(_Incident):
    """The resident presses the pendant; ``cancel_after``: presses cancel that much later."""

    type: Literal["button"] = "button"
    cancel_after: Duration | None = None


class NightWandering(_Incident):
    """The resident walks out of the front door at night and comes back ``back_after`` later."""

    type: Literal["night_wandering"] = "night_wandering"
    back_after: Duration = timedelta(minutes=40)


class LongBathroomVisit(_Incident):
    """At night the resident stays in the bathroom for ``duration`` (moving a little)."""

    type: Literal["long_bathroom"] = "long_bathroom"
    duration: Duration = timedelta(minutes=60)


class NotGettingUp(_Incident):
    """From ``at`` (in bed) the resident does not move at all for ``still_for``."""

    type: Literal["not_getting_up"] = "not_getting_up"
    still_for: Duration = timedelta(hours=12)


class Absence(_Incident):
    """The resident leaves home at ``at`` (hospital, a visit) and comes back ``duration`` later.

    ``registered``: staff register the absence in the hub when the resident leaves.
    """

    type: Literal["absence"] = "absence"
    duration: Duration = timedelta(days=2)
    registered: bool = True


Incident = Annotated[
    Fall | MaybeFall | ButtonPress | NightWandering | LongBathroomVisit | NotGettingUp | Absence,
    Field(discriminator="type"),
]
INCIDENT_TYPES: tuple[str, ...] = (
    "fall",
    "maybe_fall",
    "button",
    "night_wandering",
    "long_bathroom",
    "not_getting_up",
    "absence",
)


def takeover(incident: Incident) -> tuple[datetime, datetime] | None:
    """The span in which the incident, not the routine, decides what the resident does."""
    match incident:
        case Fall():
            return incident.at - timedelta(minutes=1), incident.at + incident.lie_for + timedelta(
                minutes=40
            )
        case NightWandering():
            return incident.at - timedelta(minutes=2), incident.at + incident.back_after + (
                timedelta(minutes=5)
            )
        case LongBathroomVisit():
            return incident.at - timedelta(minutes=1), incident.at + incident.duration + (
                timedelta(minutes=1)
            )
        case NotGettingUp():
            return incident.at, incident.at + incident.still_for + timedelta(minutes=1)
        case Absence():
            return incident.at - timedelta(minutes=3), incident.at + incident.duration + (
                timedelta(minutes=5)
            )
        case _:
            return None


def incident_events(incident: Incident, *, z2m_radar: bool) -> list[Happening]:
    """The sensor events (and staff actions) the incident causes."""
    who, t = incident.resident, incident.at
    ev: list[Happening] = []

    def motion(at: datetime, room: Room, why: str) -> None:
        ev.append(
            DeviceEvent(at, who, MOTION_KEY[room], EventKind.MOTION, (("motion", True),), why)
        )

    def door(at: datetime, opened: bool, why: str) -> None:
        ev.append(DeviceEvent(at, who, "door", EventKind.DOOR, (("open", opened),), why))

    def fall(at: datetime, status: str, why: str) -> None:
        ev.append(DeviceEvent(at, who, "fall", EventKind.FALL, (("fall_status", status),), why))

    match incident:
        case Fall():
            motion(t - timedelta(seconds=50), Room.BEDROOM, "walking")
            if incident.maybe_fall_first:
                if not z2m_radar:
                    raise ValueError(
                        f"incident {incident.id}: maybe_fall comes from a Zigbee2MQTT radar;"
                        f" resident {incident.resident} has native devices"
                    )
                fall(t - timedelta(seconds=20), "maybe_fall", "stumbles")
            fall(t, "fall", "falls")
            helped = t + incident.lie_for
            _help_arrives(motion, door, helped, stay=timedelta(minutes=30))
        case MaybeFall():
            if not z2m_radar:
                raise ValueError(
                    f"incident {incident.id}: maybe_fall comes from a Zigbee2MQTT radar;"
                    f" resident {incident.resident} has native devices"
                )
            fall(t, "maybe_fall", "bends down to pick something up")
            motion(t + timedelta(seconds=30), Room.BEDROOM, "straightens up")
        case ButtonPress():
            ev.append(
                DeviceEvent(
                    t,
                    who,
                    "button",
                    EventKind.BUTTON,
                    (("action", "press"),),
                    "presses the pendant",
                )
            )
            if incident.cancel_after is not None:
                ev.append(
                    DeviceEvent(
                        t + incident.cancel_after,
                        who,
                        "button",
                        EventKind.BUTTON,
                        (("action", "cancel"),),
                        "cancels: it was a mistake",
                    )
                )
        case NightWandering():
            motion(t - timedelta(seconds=60), Room.HALL, "confused, walks to the hall")
            door(t, True, "walks out at night")
            door(t + timedelta(seconds=15), False, "the door falls shut")
            back = t + incident.back_after
            door(back, True, "comes back in")
            door(back + timedelta(seconds=15), False, "closes the door")
            motion(back + timedelta(seconds=40), Room.HALL, "back inside")
            motion(back + timedelta(minutes=3), Room.BEDROOM, "back to bed")
        case LongBathroomVisit():
            motion(t - timedelta(seconds=40), Room.BEDROOM, "gets up at night")
            step = timedelta(minutes=6)
            at = t
            while at < t + incident.duration:
                motion(at, Room.BATHROOM, "in the bathroom, cannot get up")
                at += step
            motion(t + incident.duration, Room.BEDROOM, "finally back to bed")
        case NotGettingUp():
            motion(t + incident.still_for, Room.BEDROOM, "gets up at last")
        case Absence():
            motion(t - timedelta(minutes=2), Room.HALL, "packs a bag")
            door(t, True, "leaves home")
            door(t + timedelta(seconds=15), False, "has left")
            if incident.registered:
                ev.append(AbsenceRegistered(t + timedelta(minutes=1), who, t + incident.duration))
            back = t + incident.duration
            door(back, True, "comes home")
            door(back + timedelta(seconds=15), False, "is home")
            motion(back + timedelta(seconds=40), Room.HALL, "takes off the coat")
            motion(back + timedelta(minutes=3), Room.KITCHEN, "makes coffee")
    return ev


def _help_arrives(
    motion: Callable[[datetime, Room, str], None],
    door: Callable[[datetime, bool, str], None],
    at: datetime,
    *,
    stay: timedelta,
) -> None:
    """Home care lets itself in, helps the resident up, stays a while and leaves."""
    door(at, True, "home care lets itself in")
    door(at + timedelta(seconds=15), False, "home care is in")
    motion(at + timedelta(seconds=30), Room.HALL, "home care comes in")
    motion(at + timedelta(minutes=1), Room.BEDROOM, "helped up")
    motion(at + timedelta(minutes=10), Room.LIVING, "sits down in the living room")
    door(at + stay, True, "home care leaves")
    door(at + stay + timedelta(seconds=15), False, "home care has left")
    motion(at + stay + timedelta(minutes=1), Room.LIVING, "resting in the living room")
