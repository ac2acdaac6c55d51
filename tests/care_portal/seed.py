"""A small care story in the database for the portal's tests: two homes, devices, events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from hub.storage.models import (
    Device,
    DeviceType,
    DiscoveredDevice,
    Home,
    Protocol,
    RejectedMessage,
    Resident,
    Room,
    SensorEvent,
    Zone,
)

# 12:00 UTC is 13:00 in Oslo (winter time): the page must show the local time.
T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
HOME = "h-1001"
QUIET_HOME = "h-1002"
RESIDENT_LABEL = "Kari N., Storgata"
FALL_SENSOR = "fall-1001"  # online, battery 87 %, last seen 12:55 Oslo time
DOOR_CONTACT = "door-1001"  # offline, battery 12 % (low)
BUTTON = "btn-1001"  # never heard from, in test mode until 14:00 Oslo time
RETIRED = "old-1001"
REJECTED_TOPIC = "carehub/v1/h-1001/fall-1001/event"
REJECTED_REASON = "payload is not valid JSON: <script>alert(1)</script>"


def seed_portal_data(factory: sessionmaker[Session]) -> None:
    """Kari's home in Ørje with three working devices and a retired one; Ola's home in Mysen."""
    with factory() as session, session.begin():
        orje = Zone(name="Ørje", created_at=T0)
        mysen = Zone(name="Mysen", created_at=T0)
        session.add_all([orje, mysen])
        session.flush()
        home = Home(id=HOME, zone_id=orje.id, address="Storgata 1", created_at=T0)
        quiet = Home(id=QUIET_HOME, zone_id=mysen.id, address="Torget 2", created_at=T0)
        bathroom = Room(home=home, name="Bad", kind="bathroom")
        hall = Room(home=home, name="Gang", kind="entrance")
        session.add_all([home, quiet, bathroom, hall])
        session.add_all(
            [
                Resident(
                    home=home,
                    zone_id=orje.id,
                    label=RESIDENT_LABEL,
                    full_name="Kari Nordmann",
                    created_at=T0,
                ),
                Resident(
                    home=quiet,
                    zone_id=mysen.id,
                    label="Ola H., Torget",
                    full_name="Ola Hansen",
                    created_at=T0,
                ),
            ]
        )
        session.add_all(
            [
                _device(
                    FALL_SENSOR,
                    home,
                    bathroom,
                    DeviceType.FALL_SENSOR,
                    Protocol.NATIVE,
                    battery=87,
                    online=True,
                    last_seen_at=T0 - timedelta(minutes=5),
                ),
                _device(
                    DOOR_CONTACT,
                    home,
                    hall,
                    DeviceType.DOOR_CONTACT,
                    Protocol.ZIGBEE2MQTT,
                    z2m_friendly_name="hall_door",
                    battery=12,
                    online=False,
                    last_seen_at=T0 - timedelta(hours=3),
                ),
                _device(
                    BUTTON,
                    home,
                    None,
                    DeviceType.ALARM_BUTTON,
                    Protocol.NATIVE,
                    test_mode_until=T0 + timedelta(hours=1),
                ),
                _device(
                    RETIRED,
                    home,
                    None,
                    DeviceType.MOTION_SENSOR,
                    Protocol.NATIVE,
                    retired_at=T0 - timedelta(days=30),
                ),
            ]
        )
        session.flush()
        history: list[tuple[int, str, str, dict[str, Any]]] = [
            (30, DOOR_CONTACT, "door", {"open": True, "battery": 12}),
            (20, DOOR_CONTACT, "door", {"open": False}),
            (6, FALL_SENSOR, "fall", {"confidence": 0.93, "battery": 87}),
        ]
        for minutes_ago, device_id, kind, data in history:
            add_event(session, device_id, kind, data, T0 - timedelta(minutes=minutes_ago))
        session.add(
            DiscoveredDevice(
                protocol=Protocol.ZIGBEE2MQTT,
                identifier="0x00158d0001a2b3c4",
                home_hint=None,
                last_topic="zigbee2mqtt/0x00158d0001a2b3c4",
                first_seen_at=T0 - timedelta(hours=1),
                last_seen_at=T0 - timedelta(minutes=2),
                message_count=4,
                last_kind="motion",
                last_payload='{"occupancy": true}',
            )
        )
        session.add(
            RejectedMessage(
                received_at=T0 - timedelta(minutes=1),
                topic=REJECTED_TOPIC,
                reason_code="bad_json",
                reason=REJECTED_REASON,
                payload_size=12,
                payload_excerpt="{not json",
            )
        )


def add_event(
    session: Session, device_id: str, kind: str, data: dict[str, Any], received_at: datetime
) -> None:
    """Store a sensor event of one of Kari's devices, as the ingest would."""
    seq = int(received_at.timestamp())
    session.add(
        SensorEvent(
            device_id=device_id,
            home_id=HOME,
            kind=kind,
            event_ts=received_at,
            received_at=received_at,
            seq=seq,
            dedup_key=f"{seq}@{received_at.isoformat()}",
            data=data,
        )
    )


def _device(
    device_id: str,
    home: Home,
    room: Room | None,
    device_type: DeviceType,
    protocol: Protocol,
    **fields: Any,
) -> Device:
    return Device(
        id=device_id,
        home=home,
        room=room,
        type=device_type,
        protocol=protocol,
        supervision_interval_s=3600,
        created_at=T0,
        **fields,
    )
