"""The migrated schema keeps its promises on SQLite and PostgreSQL alike."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session, selectinload, sessionmaker

from hub.storage.db import transaction
from hub.storage.models import (
    Alarm,
    AlarmStatus,
    AlarmTimelineEntry,
    Device,
    DeviceType,
    Home,
    Protocol,
    Resident,
    Room,
    SensorEvent,
    Severity,
    Zone,
)

OSLO = ZoneInfo("Europe/Oslo")
T0 = datetime(2026, 11, 24, 14, 32, tzinfo=UTC)


def add_home(session: Session) -> Device:
    """Zone Ørje → home H1 → bedroom → Kari → her fall sensor; returns the device."""
    zone = Zone(name="Ørje", created_at=T0)
    session.add(zone)
    session.flush()
    home = Home(id="H1", zone_id=zone.id, address="Storgata 1", created_at=T0)
    room = Room(home=home, name="Soverom", kind="bedroom")
    session.add_all([home, room])
    session.flush()
    resident = Resident(
        home_id=home.id,
        zone_id=zone.id,
        label="Kari N., Storgata",
        full_name="Kari Nordmann",
        created_at=T0,
    )
    device = Device(
        id="fall-1",
        home_id=home.id,
        room_id=room.id,
        type=DeviceType.FALL_SENSOR,
        protocol=Protocol.NATIVE,
        supervision_interval_s=300,
        created_at=T0,
    )
    session.add_all([resident, device])
    session.flush()
    return device


def sensor_event(device: Device, dedup_key: str | None, seq: int = 1) -> SensorEvent:
    return SensorEvent(
        device_id=device.id,
        home_id=device.home_id,
        kind="fall",
        event_ts=T0,
        received_at=T0 + timedelta(milliseconds=40),
        seq=seq,
        dedup_key=dedup_key,
        data={"fall": True, "confidence": 0.93},
    )


def open_alarm_with_history(factory: sessionmaker[Session]) -> int:
    """A fall alarm for Kari with one timeline entry; returns the alarm id."""
    with transaction(factory) as session:
        device = add_home(session)
        resident_id = session.scalars(select(Resident.id)).one()
        alarm = Alarm(
            resident_id=resident_id,
            home_id=device.home_id,
            device_id=device.id,
            type="fall",
            severity=Severity.RED,
            status=AlarmStatus.OPEN,
            opened_at=T0,
            updated_at=T0,
        )
        alarm.timeline.append(
            AlarmTimelineEntry(at=T0, actor="rules", kind="transition", to_status="open")
        )
        session.add(alarm)
        session.flush()
        return alarm.id


def test_aware_datetimes_come_back_as_the_same_instant_in_utc(
    session_factory: sessionmaker[Session],
) -> None:
    # 03:30 in Oslo on the night summer time starts is 01:30 UTC.
    oslo_night = datetime(2026, 3, 29, 3, 30, tzinfo=OSLO)
    with transaction(session_factory) as session:
        session.add(Zone(name="Ørje", created_at=oslo_night))

    with transaction(session_factory) as session:
        stored = session.scalars(select(Zone.created_at)).one()

    assert stored == oslo_night
    assert stored.tzinfo is UTC
    assert stored == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)


def test_times_from_different_zones_sort_and_filter_by_the_real_instant(
    session_factory: sessionmaker[Session],
) -> None:
    # Local wall-clock order is the reverse of the real order: only UTC storage sorts them right.
    earlier = datetime(2026, 6, 1, 11, 0, tzinfo=OSLO)  # 09:00 UTC
    later = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)
    with transaction(session_factory) as session:
        session.add_all(
            [Zone(name="later", created_at=later), Zone(name="earlier", created_at=earlier)]
        )

    with transaction(session_factory) as session:
        in_order = session.scalars(select(Zone.name).order_by(Zone.created_at)).all()
        before_half_past_nine_utc = session.scalars(
            select(Zone.name).where(Zone.created_at < datetime(2026, 6, 1, 9, 30, tzinfo=UTC))
        ).all()

    assert in_order == ["earlier", "later"]
    assert before_half_past_nine_utc == ["earlier"]


def test_a_naive_datetime_is_refused(session_factory: sessionmaker[Session]) -> None:
    naive = datetime(2026, 11, 24, 14, 32)  # noqa: DTZ001 - the point of the test
    with (
        pytest.raises(StatementError, match="naive datetime refused"),
        transaction(session_factory) as session,
    ):
        session.add(Zone(name="Ørje", created_at=naive))

    with transaction(session_factory) as session:
        assert session.scalars(select(Zone)).all() == []


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE alarm_timeline SET actor = 'someone else'",
        "DELETE FROM alarm_timeline",
    ],
    ids=["update", "delete"],
)
def test_the_alarm_timeline_refuses_rewriting_history(
    session_factory: sessionmaker[Session], statement: str
) -> None:
    alarm_id = open_alarm_with_history(session_factory)

    with (
        pytest.raises(IntegrityError, match="alarm_timeline is append-only"),
        transaction(session_factory) as session,
    ):
        session.execute(text(statement))

    with transaction(session_factory) as session:
        entries = session.scalars(select(AlarmTimelineEntry)).all()
        assert [(e.alarm_id, e.actor, e.kind) for e in entries] == [
            (alarm_id, "rules", "transition")
        ]
        # Appending is still allowed.
        session.add(
            AlarmTimelineEntry(
                alarm_id=alarm_id, at=T0 + timedelta(seconds=1), actor="sms", kind="notification"
            )
        )

    with transaction(session_factory) as session:
        assert len(session.scalars(select(AlarmTimelineEntry)).all()) == 2


def test_the_orm_cannot_edit_a_timeline_entry_either(
    session_factory: sessionmaker[Session],
) -> None:
    open_alarm_with_history(session_factory)

    with (
        pytest.raises(IntegrityError, match="alarm_timeline is append-only"),
        transaction(session_factory) as session,
    ):
        entry = session.scalars(select(AlarmTimelineEntry)).one()
        entry.to_status = "resolved"

    with transaction(session_factory) as session:
        assert session.scalars(select(AlarmTimelineEntry.to_status)).one() == "open"


def test_the_same_event_from_the_same_device_is_stored_once(
    session_factory: sessionmaker[Session],
) -> None:
    with transaction(session_factory) as session:
        device = add_home(session)
        session.add(sensor_event(device, "7@2026-11-24T14:32:00Z", seq=7))

    with pytest.raises(IntegrityError), transaction(session_factory) as session:
        session.add(sensor_event(device, "7@2026-11-24T14:32:00Z", seq=7))

    with transaction(session_factory) as session:
        assert session.scalars(select(SensorEvent.seq)).all() == [7]


def test_events_without_a_dedup_key_are_all_kept(
    session_factory: sessionmaker[Session],
) -> None:
    with transaction(session_factory) as session:
        device = add_home(session)
        other = Device(
            id="door-1",
            home_id=device.home_id,
            type=DeviceType.DOOR_CONTACT,
            protocol=Protocol.ZIGBEE2MQTT,
            z2m_friendly_name="H1/entrance_door",
            supervision_interval_s=3600,
            created_at=T0,
        )
        session.add(other)
        session.flush()
        session.add_all(
            [
                sensor_event(device, None, seq=1),
                sensor_event(device, None, seq=2),
                sensor_event(device, "5@x", seq=5),
                # The same key from another device is another event.
                sensor_event(other, "5@x", seq=5),
            ]
        )

    with transaction(session_factory) as session:
        assert len(session.scalars(select(SensorEvent.id)).all()) == 4


def test_an_event_for_an_unknown_device_is_refused(
    session_factory: sessionmaker[Session],
) -> None:
    with transaction(session_factory) as session:
        device = add_home(session)
    ghost = Device(id="ghost", home_id=device.home_id)

    with pytest.raises(IntegrityError), transaction(session_factory) as session:
        session.add(sensor_event(ghost, None))


def test_a_home_with_its_people_devices_and_events_reads_back(
    engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    with transaction(session_factory) as session:
        device = add_home(session)
        session.add(sensor_event(device, "1@2026-11-24T14:32:00Z"))

    with transaction(session_factory) as session:
        home = session.scalars(
            select(Home).options(
                selectinload(Home.rooms), selectinload(Home.residents), selectinload(Home.devices)
            )
        ).one()
        rows = session.execute(
            select(SensorEvent, Device, Room, Zone)
            .join(Device, SensorEvent.device_id == Device.id)
            .join(Room, Device.room_id == Room.id)
            .join(Home, SensorEvent.home_id == Home.id)
            .join(Zone, Home.zone_id == Zone.id)
            .where(SensorEvent.home_id == "H1")
        ).all()

    assert [room.name for room in home.rooms] == ["Soverom"]
    assert [resident.label for resident in home.residents] == ["Kari N., Storgata"]
    assert [(d.id, d.type, d.protocol) for d in home.devices] == [
        ("fall-1", DeviceType.FALL_SENSOR, Protocol.NATIVE)
    ]
    [(event, event_device, room, zone)] = rows
    assert (event_device.id, room.name, zone.name) == ("fall-1", "Soverom", "Ørje")
    assert event.kind == "fall"
    assert event.data == {"fall": True, "confidence": 0.93}
    assert event.received_at == T0 + timedelta(milliseconds=40)
    assert event.dedup_key == "1@2026-11-24T14:32:00Z"
    # Enums are stored as their plain values, readable by any SQL client.
    with engine.connect() as connection:
        stored_type = connection.execute(text("SELECT type FROM devices")).scalar_one()
    assert stored_type == "fall_sensor"
