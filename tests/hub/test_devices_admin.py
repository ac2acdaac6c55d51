"""The installer's device operations on SQLite and PostgreSQL: credentials, history, test mode.

Also a whole walk test from simulated events through the real ingest, and the promise that a
device in test mode never escalates, through the real rules.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from devices.signing import decode_key
from hub import devices_admin as admin
from hub.broker_auth import verify_mosquitto_hash
from hub.clock import FakeClock
from hub.config import DatabaseSettings, Settings
from hub.ingest.pipeline import InboundMessage, IngestProcessor
from hub.rules.timers import ManualTimer
from hub.runtime import HubRuntime
from hub.storage.models import (
    Alarm,
    Device,
    DeviceCredential,
    DeviceHistoryEntry,
    DeviceType,
    DiscoveredDevice,
    Notification,
    Protocol,
    WalkTest,
)
from tests.factories import T0, add_home
from tests.providers import RecordingProvider

NATIVE = Protocol.NATIVE
Z2M = Protocol.ZIGBEE2MQTT


def _register(session: Session, device_id: str, **overrides: Any) -> admin.Registration:
    args: dict[str, Any] = {
        "device_id": device_id,
        "type": DeviceType.ALARM_BUTTON,
        "protocol": NATIVE,
        "home_id": "h1",
        "room": "Stue",
        "now": T0,
        "actor": "ingrid",
    }
    args.update(overrides)
    return admin.register(session, **args)


def _actions(session: Session, device_id: str) -> list[str]:
    return [entry.action for entry in admin.history(session, device_id)]


@pytest.fixture
def factory(session_factory: sessionmaker[Session]) -> sessionmaker[Session]:
    add_home(session_factory, "h1", devices=())
    add_home(session_factory, "h2", devices=())
    return session_factory


def test_registering_a_native_device_issues_a_login_shown_once_and_an_hmac_key(
    factory: sessionmaker[Session],
) -> None:
    with factory() as session, session.begin():
        reg = _register(session, "btn-1", hmac=True, room="Soverom", room_kind="bedroom")
        assert reg.mqtt_username == "btn-1" and reg.mqtt_password and reg.hmac_key
    with factory() as session:
        credential = session.get(DeviceCredential, "btn-1")
        device = session.get(Device, "btn-1")
        assert credential is not None and device is not None and device.room is not None
        assert credential.password_hash.startswith("$7$101$")
        assert reg.mqtt_password not in credential.password_hash
        assert verify_mosquitto_hash(reg.mqtt_password, credential.password_hash)
        assert credential.hmac_key == reg.hmac_key and len(decode_key(reg.hmac_key)) == 32
        assert (device.room.name, device.room.kind) == ("Soverom", "bedroom")
        assert device.supervision_interval_s == 3600
        [entry] = admin.history(session, "btn-1")
        assert (entry.action, entry.actor, entry.home_id) == ("registered", "ingrid", "h1")
        assert entry.detail["signed"] is True and "password" not in json.dumps(entry.detail)


def test_a_zigbee2mqtt_device_gets_no_login_of_its_own(factory: sessionmaker[Session]) -> None:
    with factory() as session, session.begin():
        reg = _register(
            session, "z-door", type=DeviceType.DOOR_CONTACT, protocol=Z2M, z2m_friendly_name="door"
        )
        assert reg.mqtt_password is None and reg.hmac_key is None
        assert session.get(DeviceCredential, "z-door") is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"home_id": "nowhere"}, "no home"),
        ({"device_id": "a/b"}, "must not contain"),
        ({"device_id": "a b"}, "spaces"),
        ({"protocol": Z2M}, "friendly name"),
        ({"protocol": Z2M, "z2m_friendly_name": "x", "hmac": True}, "cannot sign"),
        ({"z2m_friendly_name": "x"}, "only Zigbee2MQTT"),
    ],
)
def test_register_refuses_what_cannot_work(
    factory: sessionmaker[Session], overrides: dict[str, Any], message: str
) -> None:
    with factory() as session, pytest.raises(admin.DeviceAdminError, match=message):
        args = dict(overrides)  # the parameters are shared by both databases' runs
        _register(session, args.pop("device_id", "dev"), **args)


def test_pairing_takes_a_device_off_the_discovered_list(factory: sessionmaker[Session]) -> None:
    with factory() as session, session.begin():
        for protocol, identifier, hint in ((NATIVE, "new-btn", "h2"), (Z2M, "hall/door 2", None)):
            session.add(
                DiscoveredDevice(
                    protocol=protocol,
                    identifier=identifier,
                    home_hint=hint,
                    last_topic="t",
                    first_seen_at=T0,
                    last_seen_at=T0,
                    message_count=3,
                    last_payload="{}",
                )
            )
    with factory() as session, session.begin():
        native = admin.find_discovered(session, "new-btn")
        reg = admin.pair(
            session, native.id, type=DeviceType.ALARM_BUTTON, room="Gang", now=T0, actor="ingrid"
        )
        assert (reg.device.id, reg.device.home_id, reg.mqtt_username) == (
            "new-btn",
            "h2",
            "new-btn",
        )
        zigbee = admin.find_discovered(session, "hall/door 2")
        with pytest.raises(admin.DeviceAdminError, match="names no home"):
            admin.pair(session, zigbee.id, type="door_contact", room="Gang", now=T0, actor="i")
        reg = admin.pair(
            session, zigbee.id, type="door_contact", room="Gang", home_id="h1", now=T0, actor="i"
        )
        assert (reg.device.id, reg.device.z2m_friendly_name) == ("hall-door-2", "hall/door 2")
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(DiscoveredDevice)) == 0
        assert _actions(session, "new-btn") == ["paired"]


def test_move_replace_and_retire_keep_the_history(factory: sessionmaker[Session]) -> None:
    with factory() as session, session.begin():
        _register(session, "btn-1", hmac=True)
    with factory() as session, session.begin():
        admin.move(session, "btn-1", home_id="h2", room="Bad", now=T0, actor="ingrid")
    with factory() as session, session.begin():
        reg = admin.replace(session, "btn-1", "btn-2", now=T0 + timedelta(days=1), actor="ola")
        assert reg.hmac_key is not None  # the replacement signs like the old one did
    with factory() as session:
        old, new = session.get(Device, "btn-1"), session.get(Device, "btn-2")
        assert old is not None and new is not None and new.room is not None
        assert old.retired_at == T0 + timedelta(days=1)
        assert (new.home_id, new.room.name, new.type) == ("h2", "Bad", DeviceType.ALARM_BUTTON)
        old_login = session.get(DeviceCredential, "btn-1")
        assert old_login is not None and old_login.revoked_at is not None
        assert _actions(session, "btn-1") == ["registered", "moved", "retired", "replaced"]
        moved = admin.history(session, "btn-1")[1].detail
        assert (moved["from_home"], moved["to_home"], moved["to_room"]) == ("h1", "h2", "Bad")
        assert admin.history(session, "btn-2")[0].detail["replaces"] == "btn-1"
        with pytest.raises(admin.DeviceAdminError, match="retired"):
            admin.move(session, "btn-1", home_id="h1", room="Stue", now=T0, actor="ingrid")


def test_retiring_a_zigbee_device_frees_its_friendly_name(factory: sessionmaker[Session]) -> None:
    door = {"type": DeviceType.DOOR_CONTACT, "protocol": Z2M, "z2m_friendly_name": "door"}
    with factory() as session, session.begin():
        _register(session, "z-old", **door)
        with pytest.raises(admin.DeviceAdminError, match="belongs to device 'z-old'"):
            _register(session, "z-new", **door)
        admin.retire(session, "z-old", now=T0, actor="ingrid")
        _register(session, "z-new", **door)
    with factory() as session:
        assert admin.history(session, "z-old")[-1].detail["z2m_friendly_name"] == "door"


def test_test_mode_for_a_home_and_for_a_device_and_its_end(factory: sessionmaker[Session]) -> None:
    until = T0 + timedelta(minutes=30)
    with factory() as session, session.begin():
        _register(session, "b1")
        _register(session, "b2")
        _register(session, "b3", home_id="h2")
        changed = admin.set_test_mode(session, home_id="h1", until=until, now=T0, actor="i")
        assert [d.id for d in changed] == ["b1", "b2"]
        admin.set_test_mode(session, device_id="b2", until=None, now=T0, actor="i")
        with pytest.raises(admin.DeviceAdminError, match="either"):
            admin.set_test_mode(session, until=until, now=T0, actor="i")
    with factory() as session:
        modes = dict(session.execute(select(Device.id, Device.test_mode_until)).all())
        assert modes == {"b1": until, "b2": None, "b3": None}
        assert _actions(session, "b2") == ["registered", "test_mode", "test_mode"]


def test_the_device_history_is_append_only(factory: sessionmaker[Session]) -> None:
    with factory() as session, session.begin():
        _register(session, "b1")
    for statement in ("UPDATE device_history SET actor = 'x'", "DELETE FROM device_history"):
        with factory() as session, pytest.raises(DBAPIError, match="append-only"):
            session.execute(text(statement))
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(DeviceHistoryEntry)) == 1


# --- walk test through the real ingest --------------------------------------------------------


def _event(device: str, seq: int, minutes: float, **fields: Any) -> InboundMessage:
    at = T0 + timedelta(minutes=minutes)
    body = {"ts": at.isoformat(), "seq": seq, **fields}
    return InboundMessage(f"carehub/v1/h1/{device}/event", json.dumps(body).encode(), at)


def test_a_walk_test_completes_from_simulated_events_and_records_who_tested_what(
    factory: sessionmaker[Session],
) -> None:
    with factory() as session, session.begin():
        for device_id, device_type in (
            ("button", DeviceType.ALARM_BUTTON),
            ("door", DeviceType.DOOR_CONTACT),
            ("hall", DeviceType.MOTION_SENSOR),
            ("fall", DeviceType.FALL_SENSOR),
        ):
            _register(session, device_id, type=device_type)
        walk_id = admin.start_walk_test(session, home_id="h1", now=T0, actor="ingrid").id
        with pytest.raises(admin.DeviceAdminError, match="still running"):
            admin.start_walk_test(session, home_id="h1", now=T0, actor="ingrid")
    processor = IngestProcessor(Settings(), factory)
    processor.process(
        [
            _event("button", 1, 1, type="button", action="press"),
            _event("door", 1, 2, type="door", open=True),
            _event("hall", 1, 3, type="motion", motion=True),
        ]
    )
    with factory() as session:
        status = admin.walk_test_status(session, walk_id)
        ticks = {d.device_id: [i.done for i in d.items] for d in status.devices}
        assert ticks == {
            "button": [True],
            "door": [True, False],
            "fall": [False],
            "hall": [True],
        }
        assert not status.complete
    processor.process(
        [_event("door", 2, 4, type="door", open=False), _event("fall", 1, 5, type="fall")]
    )
    with factory() as session, session.begin():
        assert admin.walk_test_status(session, walk_id).complete
        done = admin.finish_walk_test(
            session, walk_id, now=T0 + timedelta(minutes=6), actor="ingrid"
        )
        assert done.complete and done.finished_at == T0 + timedelta(minutes=6)
    with factory() as session:
        walk = session.get(WalkTest, walk_id)
        assert walk is not None and walk.results is not None and walk.finished_by == "ingrid"
        assert walk.results["devices"]["door"]["items"] == {
            "open": (T0 + timedelta(minutes=2)).isoformat(),
            "close": (T0 + timedelta(minutes=4)).isoformat(),
        }
        assert set(session.scalars(select(Device.test_mode_until))) == {None}
        last = admin.history(session, "fall")[-2]
        assert (last.action, last.actor, last.detail["complete"]) == ("walk_test", "ingrid", True)


# --- test mode never escalates ----------------------------------------------------------------


def _count(factory: sessionmaker[Session], model: type) -> int:
    with factory() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_a_fall_from_a_device_in_test_mode_opens_no_alarm_and_sends_nothing(db_url: str) -> None:
    clock = FakeClock(T0)
    provider = RecordingProvider()
    runtime = HubRuntime(
        Settings(database=DatabaseSettings(url=db_url)),
        clock=clock,
        timer=ManualTimer(),
        escalation_timer=ManualTimer(),
        provider=provider,
        background_sender=False,
    )
    try:
        factory = runtime.session_factory
        add_home(factory, "h1", devices=())
        with factory() as session, session.begin():
            _register(session, "fall", type=DeviceType.FALL_SENSOR)
            _register(session, "button")
            admin.set_test_mode(
                session, home_id="h1", until=T0 + timedelta(minutes=30), now=T0, actor="ingrid"
            )
        runtime.processor.process(
            [
                _event("fall", 1, 1, type="fall", confidence=0.99),
                _event("button", 1, 2, type="button", action="press"),
            ]
        )
        assert _count(factory, Alarm) == 0 and _count(factory, Notification) == 0
        assert provider.sent == []
        # the same fall once test mode has ended by itself: a red alarm at once
        clock.advance(timedelta(minutes=31))
        runtime.processor.process([_event("fall", 2, 31, type="fall", confidence=0.99)])
        with factory() as session:
            alarms = session.scalars(select(Alarm)).all()
            assert [(a.type, a.severity.value, a.device_id) for a in alarms] == [
                ("fall", "red", "fall")
            ]
    finally:
        runtime.stop()
        runtime.engine.dispose()
