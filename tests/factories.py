"""Test data builders: a zone, a home with rooms, a resident and devices, in one call."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy.orm import Session, sessionmaker

from devices.catalogue import info
from hub.storage.models import Device, DeviceType, Home, Protocol, Resident, Room, Zone

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def add_home(
    factory: sessionmaker[Session],
    home_id: str = "h1",
    devices: Iterable[tuple[str, DeviceType, Protocol, str | None]] = (
        ("d-fall", DeviceType.FALL_SENSOR, Protocol.NATIVE, None),
        ("d-door", DeviceType.DOOR_CONTACT, Protocol.NATIVE, None),
        ("z-door", DeviceType.DOOR_CONTACT, Protocol.ZIGBEE2MQTT, "hall_door"),
        ("z-radar", DeviceType.FALL_SENSOR, Protocol.ZIGBEE2MQTT, "bath_radar"),
    ),
    zone_name: str = "Ørje",
) -> None:
    """Register a home with a resident and the given (id, type, protocol, z2m name) devices."""
    with factory() as session, session.begin():
        zone = session.query(Zone).filter_by(name=zone_name).one_or_none()
        if zone is None:
            zone = Zone(name=zone_name, created_at=T0)
            session.add(zone)
            session.flush()
        home = Home(id=home_id, zone_id=zone.id, address="Storgata 1", created_at=T0)
        room = Room(home=home, name="Stue", kind="living")
        session.add_all([home, room])
        session.add(
            Resident(home=home, zone_id=zone.id, label="Kari N.", full_name="Kari N", created_at=T0)
        )
        for device_id, device_type, protocol, z2m_name in devices:
            session.add(
                Device(
                    id=device_id,
                    home=home,
                    room=room,
                    type=device_type,
                    protocol=protocol,
                    z2m_friendly_name=z2m_name,
                    supervision_interval_s=info(device_type).default_supervision_interval_s,
                    created_at=T0,
                )
            )
