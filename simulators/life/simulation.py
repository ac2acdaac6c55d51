"""Pure simulation: seed + period + residents + incidents + faults → ordered deliveries.

``simulate`` is what scenarios, tests and the fleet generator call; nothing here touches the
network or the clock, so the same inputs give the same messages, byte for byte.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

from devices.events import EventKind
from hub.storage.models import Protocol
from simulators import payloads
from simulators.life.faults import (
    BrokerRestartFault,
    DeviceDies,
    Fault,
    RadioDropout,
    apply_delivery_faults,
    battery_level,
    control_faults,
    silenced,
)
from simulators.life.incidents import Incident, incident_events, takeover
from simulators.life.model import (
    HOME_DEVICES,
    AbsenceRegistered,
    Control,
    Delivery,
    DeviceEvent,
    Happening,
    Publish,
    ResidentSpec,
)
from simulators.life.routine import routine_events
from simulators.payloads import ButtonAction, MqttMessage

OSLO = ZoneInfo("Europe/Oslo")
# A device sends a status when it has said nothing for HEARTBEAT; devices look every TICK (the
# same instants in every home, so one run publishes them together). The longest silence is
# HEARTBEAT + TICK = 50 min, well inside the catalogue's 1 h supervision plus 60 s grace.
HEARTBEAT = timedelta(minutes=40)
TICK = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class Simulation:
    """What a run will do, in order, and the happenings it was built from (for reading)."""

    deliveries: tuple[Delivery, ...]
    happenings: tuple[Happening, ...]

    @property
    def publishes(self) -> list[Publish]:
        return [d for d in self.deliveries if isinstance(d, Publish)]


def resident_happenings(
    seed: int,
    resident: ResidentSpec,
    start: datetime,
    end: datetime,
    incidents: Sequence[Incident] = (),
    tz: tzinfo = OSLO,
) -> list[Happening]:
    """A resident's life in the period: the routine, with each incident taking over its span."""
    mine = [i for i in incidents if i.resident == resident.key]
    spans = [s for s in (takeover(i) for i in mine) if s is not None]
    events: list[Happening] = [
        e
        for e in routine_events(seed, resident, start, end, tz)
        if not any(a <= e.at < b for a, b in spans)
    ]
    z2m = resident.protocol is Protocol.ZIGBEE2MQTT
    for incident in mine:
        events.extend(h for h in incident_events(incident, z2m_radar=z2m) if start <= h.at < end)
    return sorted(events, key=lambda h: h.at)


def simulate(
    residents: Sequence[ResidentSpec],
    start: datetime,
    end: datetime,
    *,
    seed: int = 1,
    incidents: Sequence[Incident] = (),
    faults: Sequence[Fault] = (),
    tz: tzinfo = OSLO,
    heartbeat: timedelta = HEARTBEAT,
) -> Simulation:
    """Every message the homes send between ``start`` and ``end`` (aware datetimes), in order."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware")
    if end <= start:
        raise ValueError("end must be after start")
    keys = [r.key for r in residents]
    if len(set(keys)) != len(keys):
        raise ValueError("resident keys must be unique")
    named = {i.resident for i in incidents}
    named |= {f.resident for f in faults if not isinstance(f, BrokerRestartFault)}
    unknown = sorted(named - set(keys))
    if unknown:
        raise ValueError(f"incidents or faults name unknown residents: {', '.join(unknown)}")
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    fault_list = list(faults)
    happenings: list[Happening] = []
    deliveries: list[Delivery] = []
    for resident in residents:
        lived = resident_happenings(seed, resident, start, end, incidents, tz)
        happenings.extend(lived)
        deliveries.extend(_render(resident, lived, start, end, fault_list, tz, heartbeat))
    deliveries.extend(control_faults(fault_list))
    deliveries = apply_delivery_faults(deliveries, fault_list)
    return Simulation(tuple(deliveries), tuple(sorted(happenings, key=lambda h: h.at)))


def _render(
    resident: ResidentSpec,
    lived: list[Happening],
    start: datetime,
    end: datetime,
    faults: list[Fault],
    tz: tzinfo,
    heartbeat: timedelta,
) -> list[Delivery]:
    """Turn a resident's happenings into the messages the home's devices send, heartbeats too."""
    seq = dict.fromkeys((d.key for d in HOME_DEVICES), 0)
    last_sent: dict[str, datetime | None] = dict.fromkeys(seq, None)
    out: list[Delivery] = []

    def send(at: datetime, device: str, message: MqttMessage, note: str) -> None:
        if silenced(faults, resident.key, device, at):
            return
        out.append(Publish(at, resident.key, device, message, note))
        last_sent[device] = at

    # the end of a drop-out: the device reconnects and says it is online at once
    reconnects = sorted(
        (f.at + f.duration, f.device)
        for f in faults
        if isinstance(f, RadioDropout)
        and f.resident == resident.key
        and start <= f.at + f.duration < end
    )

    def reconnects_until(t: datetime) -> None:
        while reconnects and reconnects[0][0] <= t:
            at, device = reconnects.pop(0)
            send(at, device, _status(resident, device, at, faults), "reconnects")

    def heartbeats_until(t: datetime, tick: datetime) -> datetime:
        while tick <= t and tick < end:
            reconnects_until(tick)
            for spec in HOME_DEVICES:
                sent = last_sent[spec.key]
                if sent is None or tick - sent >= heartbeat:
                    send(tick, spec.key, _status(resident, spec.key, tick, faults), "heartbeat")
            tick += TICK
        reconnects_until(t)
        return tick

    tick = heartbeats_until(start, start)
    for happening in lived:
        tick = heartbeats_until(happening.at, tick)
        if isinstance(happening, AbsenceRegistered):
            out.append(Control(happening.at, happening))
            continue
        battery = battery_level(faults, resident.key, happening.device, happening.at)
        seq[happening.device] += 1
        message = _event_message(resident, happening, seq[happening.device], battery, tz)
        send(happening.at, happening.device, message, happening.why)
    heartbeats_until(end - timedelta(microseconds=1), tick)
    # a device that dies with a will: the broker publishes it (retained) at once
    for fault in faults:
        if (
            isinstance(fault, DeviceDies)
            and fault.resident == resident.key
            and fault.will
            and start <= fault.at < end
        ):
            will = _status(resident, fault.device, fault.at, faults, online=False)
            out.append(Publish(fault.at, resident.key, fault.device, will, "last will (broker)"))
    return sorted(out, key=lambda d: d.at)


def _status(
    resident: ResidentSpec, device: str, at: datetime, faults: list[Fault], *, online: bool = True
) -> MqttMessage:
    ident = resident.device_id(device)
    if resident.protocol is Protocol.NATIVE:
        battery = battery_level(faults, resident.key, device, at) if online else None
        return payloads.native_status(resident.home_id, ident, online=online, battery=battery)
    return payloads.z2m_availability(ident, online=online)


def _event_message(
    resident: ResidentSpec, event: DeviceEvent, seq: int, battery: int, tz: tzinfo
) -> MqttMessage:
    ident = resident.device_id(event.device)
    native = resident.protocol is Protocol.NATIVE
    ts = event.at.astimezone(tz)
    kind = event.kind
    if kind is EventKind.MOTION:
        moved = bool(event.field("motion"))
        if native:
            return payloads.native_motion(
                resident.home_id, ident, motion=moved, ts=ts, seq=seq, battery=battery
            )
        return payloads.z2m_motion(ident, occupancy=moved, battery=battery)
    if kind is EventKind.DOOR:
        opened = bool(event.field("open"))
        if native:
            return payloads.native_door(
                resident.home_id, ident, open=opened, ts=ts, seq=seq, battery=battery
            )
        return payloads.z2m_door(ident, open=opened, battery=battery)
    if kind is EventKind.BUTTON:
        action: ButtonAction = "cancel" if event.field("action") == "cancel" else "press"
        if native:
            return payloads.native_button(
                resident.home_id, ident, action=action, ts=ts, seq=seq, battery=battery
            )
        return payloads.z2m_button(ident, action=action, battery=battery)
    status = event.field("fall_status") or "fall"
    if native:
        if status != "fall":
            raise ValueError(f"native fall sensors have no {status!r} state")
        return payloads.native_fall(resident.home_id, ident, ts=ts, seq=seq, battery=battery)
    if status not in ("fall", "maybe_fall", "none"):
        raise ValueError(f"unknown fall status {status!r}")
    return payloads.z2m_fall(ident, status=status, battery=battery)
