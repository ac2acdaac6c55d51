"""The demo municipality: zone Ørje, three residents with homes and devices, four accounts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import time

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
    ShiftPattern,
    StaffRole,
    StaffUser,
    Zone,
)

DEMO_PASSWORD = "demo"
DEMO_SHIFTS = (
    ("day", time(7, 0), time(15, 0)),
    ("evening", time(15, 0), time(23, 0)),
    ("night", time(23, 0), time(7, 0)),
)
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
    room: str | None
    z2m_name: str | None = None


@dataclass(frozen=True, slots=True)
class DemoHome:
    home_id: str
    devices: tuple[DemoDevice, ...]


@dataclass(frozen=True, slots=True)
class DemoResident:
    label: str
    name: str
    address: str
    relatives: tuple[tuple[str, str, RelativeRole], ...] = ()


DEMO_RESIDENTS: tuple[DemoResident, ...] = (
    DemoResident(
        "Kari N., Storgata",
        "Kari Nordmann",
        "Storgata 1, 1870 Ørje",
        (("Anne Nordmann", "+4791000001", RelativeRole.ACTING),),
    ),
    DemoResident(
        "Ola H., Haldenveien",
        "Ola Hansen",
        "Haldenveien 12, 1870 Ørje",
        (("Per Hansen", "+4791000002", RelativeRole.INFORMED),),
    ),
    DemoResident("Ingrid B., Kirkeveien", "Ingrid Berg", "Kirkeveien 3, 1870 Ørje"),
)


def seed_demo(session: Session, clock: Clock, homes: Sequence[DemoHome]) -> bool:
    """Create zone Ørje, a resident per home (up to three), their devices and the demo accounts.

    Does nothing and returns False when the zone exists already.
    """
    if session.scalar(select(Zone).where(Zone.name == "Ørje")) is not None:
        return False
    now = clock.now()
    zone = Zone(name="Ørje", created_at=now)
    session.add(zone)
    session.flush()
    for spec, person in zip(homes, DEMO_RESIDENTS, strict=False):
        home = Home(id=spec.home_id, zone_id=zone.id, address=person.address, created_at=now)
        session.add(home)
        rooms: dict[str, Room] = {}
        for dev in spec.devices:
            if dev.room and dev.room not in rooms:
                rooms[dev.room] = Room(home=home, name=dev.room, kind=_room_kind(dev.room))
        session.add_all(rooms.values())
        resident = Resident(
            home=home,
            zone_id=zone.id,
            label=person.label,
            full_name=person.name,
            created_at=now,
        )
        session.add(resident)
        for priority, (rel_name, rel_phone, rel_role) in enumerate(person.relatives, start=1):
            session.add(
                Relative(
                    resident=resident,
                    name=rel_name,
                    phone=rel_phone,
                    priority=priority,
                    role=rel_role,
                    created_at=now,
                )
            )
        for dev in spec.devices:
            session.add(
                Device(
                    id=dev.id,
                    home=home,
                    room=rooms.get(dev.room) if dev.room else None,
                    type=dev.type,
                    protocol=dev.protocol,
                    z2m_friendly_name=dev.z2m_name,
                    supervision_interval_s=info(dev.type).default_supervision_interval_s,
                    created_at=now,
                )
            )
    password_hash = hash_password(DEMO_PASSWORD)
    users: dict[str, StaffUser] = {}
    for username, staff_role, display, staff_phone in DEMO_ACCOUNTS:
        if session.scalar(select(StaffUser).where(StaffUser.username == username)) is None:
            users[username] = StaffUser(
                username=username,
                display_name=display,
                role=staff_role,
                password_hash=password_hash,
                phone=staff_phone,
                zone_id=zone.id,
                active=True,
                created_at=now,
            )
            session.add(users[username])
    session.flush()
    nurse = users.get("nurse")
    if nurse is not None:  # the demo nurse is on duty around the clock, in three shifts a day
        for weekday in range(7):
            for name, start, end in DEMO_SHIFTS:
                session.add(
                    ShiftPattern(
                        zone_id=zone.id,
                        user_id=nurse.id,
                        name=name,
                        weekday=weekday,
                        start=start,
                        end=end,
                    )
                )
    return True


def _room_kind(name: str) -> str:
    lowered = name.lower()
    for kind in ("bedroom", "bathroom", "kitchen", "living", "entrance"):
        if kind in lowered:
            return kind
    return "other"
