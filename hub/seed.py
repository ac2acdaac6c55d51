"""The demo municipality: zone Ørje, three residents with homes and devices, four accounts."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from devices.catalogue import info
from hub.clock import Clock
from hub.passwords import hash_password
from hub.storage.models import (
    Device,
    DeviceType,
    Home,
    Protocol,
    Relative,
    RelativeRole,
    Resident,
    Room,
    StaffRole,
    StaffUser,
    Zone,
)

DEMO_PASSWORD = "demo"
DEMO_ACCOUNTS: tuple[tuple[str, StaffRole, str, str | None], ...] = (
    ("admin", StaffRole.ADMIN, "Demo Admin", None),
    ("coordinator", StaffRole.COORDINATOR, "Kristin Koordinator", "+4790000002"),
    ("nurse", StaffRole.NURSE, "Nina Sykepleier", "+4790000001"),
    ("installer", StaffRole.INSTALLER, "Ivar Installatør", "+4790000003"),
)


@dataclass(frozen=True, slots=True)
class DemoDevice:
    id: str
    type: DeviceType
    protocol: Protocol
    room: str
    z2m_name: str | None = None


@dataclass(frozen=True, slots=True)
class DemoHome:
    home_id: str
    address: str
    resident_label: str
    resident_name: str
    rooms: tuple[tuple[str, str], ...]
    devices: tuple[DemoDevice, ...]
    relatives: tuple[tuple[str, str, RelativeRole], ...] = ()


_ROOMS = (
    ("Soverom", "bedroom"),
    ("Bad", "bathroom"),
    ("Gang", "entrance"),
    ("Stue", "living"),
    ("Kjøkken", "kitchen"),
)

DEMO_HOMES: tuple[DemoHome, ...] = (
    DemoHome(
        "h-orje-01",
        "Storgata 1, 1870 Ørje",
        "Kari N., Storgata",
        "Kari Nordmann",
        _ROOMS,
        (
            DemoDevice("d-orje-01-fall", DeviceType.FALL_SENSOR, Protocol.NATIVE, "Soverom"),
            DemoDevice("d-orje-01-button", DeviceType.ALARM_BUTTON, Protocol.NATIVE, "Stue"),
            DemoDevice("d-orje-01-motion-bath", DeviceType.MOTION_SENSOR, Protocol.NATIVE, "Bad"),
            DemoDevice(
                "z-orje-01-door",
                DeviceType.DOOR_CONTACT,
                Protocol.ZIGBEE2MQTT,
                "Gang",
                "orje01_door",
            ),
            DemoDevice(
                "z-orje-01-motion-living",
                DeviceType.MOTION_SENSOR,
                Protocol.ZIGBEE2MQTT,
                "Stue",
                "orje01_living_motion",
            ),
        ),
        (("Anne Nordmann", "+4791000001", RelativeRole.ACTING),),
    ),
    DemoHome(
        "h-orje-02",
        "Haldenveien 12, 1870 Ørje",
        "Ola H., Haldenveien",
        "Ola Hansen",
        _ROOMS,
        (
            DemoDevice(
                "z-orje-02-radar",
                DeviceType.FALL_SENSOR,
                Protocol.ZIGBEE2MQTT,
                "Bad",
                "orje02_fall_radar",
            ),
            DemoDevice("d-orje-02-button", DeviceType.ALARM_BUTTON, Protocol.NATIVE, "Soverom"),
            DemoDevice("d-orje-02-door", DeviceType.DOOR_CONTACT, Protocol.NATIVE, "Gang"),
            DemoDevice(
                "d-orje-02-motion-living", DeviceType.MOTION_SENSOR, Protocol.NATIVE, "Stue"
            ),
        ),
        (("Per Hansen", "+4791000002", RelativeRole.INFORMED),),
    ),
    DemoHome(
        "h-orje-03",
        "Kirkeveien 3, 1870 Ørje",
        "Ingrid B., Kirkeveien",
        "Ingrid Berg",
        _ROOMS,
        (
            DemoDevice("d-orje-03-fall", DeviceType.FALL_SENSOR, Protocol.NATIVE, "Stue"),
            DemoDevice("d-orje-03-button", DeviceType.ALARM_BUTTON, Protocol.NATIVE, "Soverom"),
            DemoDevice("d-orje-03-door", DeviceType.DOOR_CONTACT, Protocol.NATIVE, "Gang"),
            DemoDevice("d-orje-03-motion-bath", DeviceType.MOTION_SENSOR, Protocol.NATIVE, "Bad"),
            DemoDevice(
                "d-orje-03-motion-bed", DeviceType.MOTION_SENSOR, Protocol.NATIVE, "Soverom"
            ),
        ),
    ),
)


def seed_demo(session: Session, clock: Clock) -> bool:
    """Create the demo municipality unless it exists; returns whether anything was created."""
    if session.scalar(select(Zone).where(Zone.name == "Ørje")) is not None:
        return False
    now = clock.now()
    zone = Zone(name="Ørje", created_at=now)
    session.add(zone)
    session.flush()
    for spec in DEMO_HOMES:
        home = Home(id=spec.home_id, zone_id=zone.id, address=spec.address, created_at=now)
        session.add(home)
        rooms = {name: Room(home=home, name=name, kind=kind) for name, kind in spec.rooms}
        session.add_all(rooms.values())
        resident = Resident(
            home=home,
            zone_id=zone.id,
            label=spec.resident_label,
            full_name=spec.resident_name,
            created_at=now,
        )
        session.add(resident)
        for priority, (name, phone, role) in enumerate(spec.relatives, start=1):
            session.add(
                Relative(
                    resident=resident,
                    name=name,
                    phone=phone,
                    priority=priority,
                    role=role,
                    created_at=now,
                )
            )
        for dev in spec.devices:
            session.add(
                Device(
                    id=dev.id,
                    home=home,
                    room=rooms[dev.room],
                    type=dev.type,
                    protocol=dev.protocol,
                    z2m_friendly_name=dev.z2m_name,
                    supervision_interval_s=info(dev.type).default_supervision_interval_s,
                    created_at=now,
                )
            )
    password_hash = hash_password(DEMO_PASSWORD)
    for username, staff_role, display, staff_phone in DEMO_ACCOUNTS:
        if session.scalar(select(StaffUser).where(StaffUser.username == username)) is None:
            session.add(
                StaffUser(
                    username=username,
                    display_name=display,
                    role=staff_role,
                    password_hash=password_hash,
                    phone=staff_phone,
                    zone_id=zone.id,
                    active=True,
                    created_at=now,
                )
            )
    return True
