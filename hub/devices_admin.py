"""The installer's device operations: register, pair, move, replace, retire, test mode, walk test.

Every function works inside the caller's transaction (it never commits), takes ``now`` and
``actor``, and appends to the device history. Credentials change here; the broker's files
follow with ``hub.broker_auth.sync_broker_auth`` after the commit.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from devices.catalogue import info
from devices.signing import encode_key, new_key
from devices.topics import friendly_name_problem, id_problem
from devices.walktest import ItemProgress, ObservedEvent, walk_test_progress
from hub.broker_auth import mosquitto_hash, new_password, topic_problem, username_problem
from hub.storage.models import (
    BrokerAccount,
    Device,
    DeviceCredential,
    DeviceHistoryEntry,
    DeviceType,
    DiscoveredDevice,
    Home,
    Protocol,
    Room,
    SensorEvent,
    WalkTest,
)

DEFAULT_WALK_TEST_MINUTES = 30
_UNSAFE_ID_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


class DeviceAdminError(ValueError):
    """An installer's request that cannot be carried out; the text says why."""


@dataclass(frozen=True, slots=True)
class Registration:
    """A registered device and its one-time secrets (shown once, never stored in clear)."""

    device: Device
    mqtt_username: str | None
    mqtt_password: str | None
    hmac_key: str | None  # base64; also stored, for the ingest to verify signatures


def _history(
    session: Session,
    device: Device,
    action: str,
    *,
    now: datetime,
    actor: str,
    **detail: Any,
) -> None:
    session.add(
        DeviceHistoryEntry(
            device_id=device.id,
            home_id=device.home_id,
            at=now,
            actor=actor,
            action=action,
            detail=detail,
        )
    )


def _home(session: Session, home_id: str) -> Home:
    home = session.get(Home, home_id)
    if home is None:
        raise DeviceAdminError(f"there is no home {home_id!r}")
    return home


def _room(session: Session, home: Home, name: str, kind: str) -> Room:
    room = session.scalars(select(Room).where(Room.home_id == home.id, Room.name == name)).first()
    if room is None:
        room = Room(home_id=home.id, name=name, kind=kind)
        session.add(room)
        session.flush()
    return room


def _active(session: Session, device_id: str) -> Device:
    device = session.get(Device, device_id)
    if device is None:
        raise DeviceAdminError(f"there is no device {device_id!r}")
    if device.retired_at is not None:
        raise DeviceAdminError(f"device {device_id!r} was retired on {device.retired_at:%Y-%m-%d}")
    return device


def _credential_problem(device_id: str, home_id: str) -> str | None:
    for problem in (
        username_problem(device_id),
        topic_problem(device_id),
        topic_problem(home_id),
    ):
        if problem is not None:
            return problem
    return None


def _reserved_usernames(session: Session) -> set[str]:
    return set(session.scalars(select(BrokerAccount.username)))


def _issue_credential(
    session: Session, device: Device, *, hmac: bool, now: datetime
) -> tuple[str, str, str | None]:
    problem = _credential_problem(device.id, device.home_id)
    if problem is not None:
        raise DeviceAdminError(f"device {device.id!r} cannot get MQTT credentials: {problem}")
    if device.id in _reserved_usernames(session):
        raise DeviceAdminError(f"{device.id!r} is the name of a broker account already")
    password = new_password()
    key = encode_key(new_key()) if hmac else None
    session.add(
        DeviceCredential(
            device_id=device.id,
            mqtt_username=device.id,
            password_hash=mosquitto_hash(password),
            hmac_key=key,
            created_at=now,
        )
    )
    return device.id, password, key


def _forget_discovered(session: Session, protocol: Protocol, identifier: str) -> bool:
    found = session.scalars(
        select(DiscoveredDevice).where(
            DiscoveredDevice.protocol == protocol, DiscoveredDevice.identifier == identifier
        )
    ).first()
    if found is None:
        return False
    session.delete(found)
    return True


def register(
    session: Session,
    *,
    device_id: str,
    type: DeviceType | str,
    protocol: Protocol | str,
    home_id: str,
    room: str,
    z2m_friendly_name: str | None = None,
    hmac: bool = False,
    room_kind: str = "other",
    supervision_interval_s: int | None = None,
    now: datetime,
    actor: str,
    action: str = "registered",
    **detail: Any,
) -> Registration:
    """Register a device in a home's room (the room is created when the home has none by that name).

    A native device gets an MQTT login (username = device id, a random password shown once) and,
    with ``hmac``, a key for signed payloads. A Zigbee2MQTT device gets neither: its bridge
    publishes for it with the bridge's own login.
    """
    device_type = DeviceType(type)
    proto = Protocol(protocol)
    problem = id_problem(device_id, "device id")
    if problem is not None:
        raise DeviceAdminError(problem)
    if session.get(Device, device_id) is not None:
        raise DeviceAdminError(f"a device {device_id!r} exists already (retired ids stay taken)")
    if proto is Protocol.ZIGBEE2MQTT:
        if not z2m_friendly_name:
            raise DeviceAdminError("a Zigbee2MQTT device needs its friendly name")
        problem = friendly_name_problem(z2m_friendly_name)
        if problem is not None:
            raise DeviceAdminError(problem)
        if hmac:
            raise DeviceAdminError(
                "Zigbee2MQTT devices cannot sign payloads (the bridge publishes for them)"
            )
        taken = session.scalars(
            select(Device.id).where(Device.z2m_friendly_name == z2m_friendly_name)
        ).first()
        if taken is not None:
            raise DeviceAdminError(
                f"the friendly name {z2m_friendly_name!r} belongs to device {taken!r}"
            )
    elif z2m_friendly_name is not None:
        raise DeviceAdminError("only Zigbee2MQTT devices have a friendly name")
    home = _home(session, home_id)
    the_room = _room(session, home, room, room_kind)
    device = Device(
        id=device_id,
        home_id=home.id,
        room_id=the_room.id,
        type=device_type,
        protocol=proto,
        z2m_friendly_name=z2m_friendly_name,
        supervision_interval_s=supervision_interval_s
        or info(device_type).default_supervision_interval_s,
        created_at=now,
    )
    session.add(device)
    session.flush()
    username = password = key = None
    if proto is Protocol.NATIVE:
        username, password, key = _issue_credential(session, device, hmac=hmac, now=now)
    identifier = device_id if proto is Protocol.NATIVE else str(z2m_friendly_name)
    _forget_discovered(session, proto, identifier)
    _history(
        session,
        device,
        action,
        now=now,
        actor=actor,
        type=device_type.value,
        protocol=proto.value,
        room=room,
        z2m_friendly_name=z2m_friendly_name,
        mqtt_username=username,
        signed=key is not None,
        **detail,
    )
    return Registration(device, username, password, key)


def _id_from_name(name: str) -> str:
    return _UNSAFE_ID_CHARS.sub("-", name).strip("-")[:64] or "z2m-device"


def find_discovered(session: Session, identifier: str) -> DiscoveredDevice:
    """A discovered device by its identifier (as `carehub device discovered` lists it) or row id."""
    rows = list(
        session.scalars(select(DiscoveredDevice).where(DiscoveredDevice.identifier == identifier))
    )
    if not rows and identifier.isdigit():
        row = session.get(DiscoveredDevice, int(identifier))
        rows = [row] if row is not None else []
    if not rows:
        raise DeviceAdminError(f"no discovered device {identifier!r}")
    if len(rows) > 1:
        raise DeviceAdminError(
            f"{identifier!r} was discovered on both protocols; pair it by its row id"
        )
    return rows[0]


def pair(
    session: Session,
    discovered_id: int,
    *,
    type: DeviceType | str,
    room: str,
    home_id: str | None = None,
    device_id: str | None = None,
    hmac: bool = False,
    room_kind: str = "other",
    now: datetime,
    actor: str,
) -> Registration:
    """Register a device from the discovered list (and take it off the list).

    A native device keeps its identifier as its id and the home its topic named (unless another
    is given). A Zigbee2MQTT device is registered under its friendly name; its id defaults to
    the name with anything but letters, digits, ``.``, ``_`` and ``-`` made ``-``.
    """
    found = session.get(DiscoveredDevice, discovered_id)
    if found is None:
        raise DeviceAdminError(f"no discovered device with row id {discovered_id}")
    home = home_id or found.home_hint
    if home is None:
        raise DeviceAdminError(
            f"{found.identifier!r} came through Zigbee2MQTT, which names no home: give the home"
        )
    if found.protocol is Protocol.NATIVE:
        if device_id not in (None, found.identifier):
            raise DeviceAdminError("a native device keeps the id its topic uses")
        new_id, name = found.identifier, None
    else:
        new_id, name = device_id or _id_from_name(found.identifier), found.identifier
    return register(
        session,
        device_id=new_id,
        type=type,
        protocol=found.protocol,
        home_id=home,
        room=room,
        z2m_friendly_name=name,
        hmac=hmac,
        room_kind=room_kind,
        now=now,
        actor=actor,
        action="paired",
        messages_seen=found.message_count,
        first_seen_at=found.first_seen_at.isoformat(),
    )


def move(
    session: Session,
    device_id: str,
    *,
    home_id: str,
    room: str,
    room_kind: str = "other",
    now: datetime,
    actor: str,
) -> Device:
    """Move a device to another room, or another home (its native topics then change too)."""
    device = _active(session, device_id)
    old_home, old_room = device.home_id, device.room.name if device.room else None
    home = _home(session, home_id)
    if device.protocol is Protocol.NATIVE and home.id != old_home:
        problem = topic_problem(home.id)
        if problem is not None:
            raise DeviceAdminError(problem)
    the_room = _room(session, home, room, room_kind)
    device.home_id = home.id
    device.room_id = the_room.id
    session.flush()
    session.expire(device, ["home", "room"])
    _history(
        session,
        device,
        "moved",
        now=now,
        actor=actor,
        from_home=old_home,
        from_room=old_room,
        to_home=home.id,
        to_room=room,
    )
    return device


def _revoke(session: Session, device_id: str, now: datetime) -> bool:
    credential = session.get(DeviceCredential, device_id)
    if credential is None or credential.revoked_at is not None:
        return False
    credential.revoked_at = now
    return True


def retire(
    session: Session, device_id: str, *, now: datetime, actor: str, reason: str | None = None
) -> Device:
    """Retire a device: its events are no longer accepted and its MQTT login is revoked.

    The device row, its events and its history stay. A Zigbee2MQTT friendly name is freed for
    a new device (the history keeps it).
    """
    device = _active(session, device_id)
    revoked = _revoke(session, device_id, now)
    name = device.z2m_friendly_name
    device.retired_at = now
    device.test_mode_until = None
    device.z2m_friendly_name = None
    session.flush()
    _history(
        session,
        device,
        "retired",
        now=now,
        actor=actor,
        reason=reason,
        credentials_revoked=revoked,
        z2m_friendly_name=name,
    )
    return device


def replace(
    session: Session,
    old_id: str,
    new_id: str,
    *,
    z2m_friendly_name: str | None = None,
    hmac: bool | None = None,
    now: datetime,
    actor: str,
) -> Registration:
    """Retire ``old_id`` and register ``new_id`` in its place: same type, protocol, home, room.

    ``hmac`` None keeps what the old device had. A Zigbee2MQTT replacement takes the old
    friendly name unless another is given.
    """
    old = _active(session, old_id)
    credential = session.get(DeviceCredential, old_id)
    signed = credential is not None and credential.hmac_key is not None
    room = old.room.name if old.room is not None else "unknown"
    room_kind = old.room.kind if old.room is not None else "other"
    name = z2m_friendly_name or old.z2m_friendly_name
    retire(session, old_id, now=now, actor=actor, reason=f"replaced by {new_id}")
    _history(session, old, "replaced", now=now, actor=actor, replaced_by=new_id)
    return register(
        session,
        device_id=new_id,
        type=old.type,
        protocol=old.protocol,
        home_id=old.home_id,
        room=room,
        room_kind=room_kind,
        z2m_friendly_name=name if old.protocol is Protocol.ZIGBEE2MQTT else None,
        hmac=signed if hmac is None else hmac,
        supervision_interval_s=old.supervision_interval_s,
        now=now,
        actor=actor,
        replaces=old_id,
    )


def set_test_mode(
    session: Session,
    *,
    device_id: str | None = None,
    home_id: str | None = None,
    until: datetime | None,
    now: datetime,
    actor: str,
) -> list[Device]:
    """Put one device or all of a home's devices in test mode until ``until`` (None: end it).

    Test mode ends by itself: the rules ignore a device's observations while
    ``test_mode_until`` is later than them, and nothing needs to run when it passes.
    """
    if (device_id is None) == (home_id is None):
        raise DeviceAdminError("give either a device or a home")
    if until is not None and until <= now:
        until = None
    if device_id is not None:
        devices = [_active(session, device_id)]
    else:
        assert home_id is not None
        _home(session, home_id)
        devices = list(
            session.scalars(
                select(Device)
                .where(Device.home_id == home_id, Device.retired_at.is_(None))
                .order_by(Device.id)
            )
        )
    for device in devices:
        device.test_mode_until = until
        _history(
            session,
            device,
            "test_mode",
            now=now,
            actor=actor,
            until=until.isoformat() if until is not None else None,
        )
    session.flush()
    return devices


def issue_bridge_account(
    session: Session, username: str, *, now: datetime, actor: str
) -> tuple[str, str]:
    """A (new or renewed) login for a Zigbee2MQTT bridge; returns (username, password) once."""
    problem = username_problem(username)
    if problem is not None:
        raise DeviceAdminError(problem)
    if session.scalars(
        select(DeviceCredential.device_id).where(DeviceCredential.mqtt_username == username)
    ).first():
        raise DeviceAdminError(f"{username!r} is a device's MQTT username")
    password = new_password()
    account = session.get(BrokerAccount, username)
    if account is None:
        account = BrokerAccount(username=username, kind="zigbee2mqtt_bridge", created_at=now)
        session.add(account)
    account.password_hash = mosquitto_hash(password)
    account.revoked_at = None
    session.flush()
    return username, password


def history(session: Session, device_id: str) -> list[DeviceHistoryEntry]:
    """A device's history, oldest first."""
    return list(
        session.scalars(
            select(DeviceHistoryEntry)
            .where(DeviceHistoryEntry.device_id == device_id)
            .order_by(DeviceHistoryEntry.at, DeviceHistoryEntry.id)
        )
    )


# --- walk test ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeviceWalkProgress:
    """One device's checklist in a walk test."""

    device_id: str
    type: DeviceType
    room: str | None
    items: tuple[ItemProgress, ...]

    @property
    def complete(self) -> bool:
        return all(item.done for item in self.items)


@dataclass(frozen=True, slots=True)
class WalkTestStatus:
    """Where a walk test stands: every device of the home and what it has shown."""

    id: int
    home_id: str
    started_by: str
    started_at: datetime
    test_mode_until: datetime
    finished_at: datetime | None
    devices: tuple[DeviceWalkProgress, ...]

    @property
    def complete(self) -> bool:
        return all(d.complete for d in self.devices)


def start_walk_test(
    session: Session,
    *,
    home_id: str,
    now: datetime,
    actor: str,
    minutes: int = DEFAULT_WALK_TEST_MINUTES,
) -> WalkTest:
    """Start a walk test: the home's devices go into test mode for ``minutes``."""
    if minutes <= 0:
        raise DeviceAdminError("a walk test needs a positive number of minutes")
    _home(session, home_id)
    running = session.scalars(
        select(WalkTest).where(WalkTest.home_id == home_id, WalkTest.finished_at.is_(None))
    ).first()
    if running is not None:
        raise DeviceAdminError(
            f"walk test {running.id} of home {home_id} is still running: finish it first"
        )
    until = now + timedelta(minutes=minutes)
    set_test_mode(session, home_id=home_id, until=until, now=now, actor=actor)
    walk = WalkTest(home_id=home_id, started_by=actor, started_at=now, test_mode_until=until)
    session.add(walk)
    session.flush()
    return walk


def latest_walk_test(session: Session, home_id: str) -> WalkTest:
    """The home's most recent walk test."""
    walk = session.scalars(
        select(WalkTest).where(WalkTest.home_id == home_id).order_by(WalkTest.id.desc())
    ).first()
    if walk is None:
        raise DeviceAdminError(f"home {home_id} has had no walk test")
    return walk


def _walk(session: Session, walk_test_id: int) -> WalkTest:
    walk = session.get(WalkTest, walk_test_id)
    if walk is None:
        raise DeviceAdminError(f"there is no walk test {walk_test_id}")
    return walk


def _home_devices(session: Session, home_id: str) -> Sequence[Device]:
    return session.scalars(
        select(Device)
        .where(Device.home_id == home_id, Device.retired_at.is_(None))
        .order_by(Device.id)
    ).all()


def walk_test_status(session: Session, walk_test_id: int) -> WalkTestStatus:
    """Tick each device's checklist from the sensor events stored since the test started."""
    walk = _walk(session, walk_test_id)
    devices = _home_devices(session, walk.home_id)
    query = (
        select(SensorEvent.device_id, SensorEvent.kind, SensorEvent.data, SensorEvent.received_at)
        .where(
            SensorEvent.home_id == walk.home_id,
            SensorEvent.received_at >= walk.started_at,
            SensorEvent.kind != "status",
        )
        .order_by(SensorEvent.received_at, SensorEvent.id)
    )
    if walk.finished_at is not None:
        query = query.where(SensorEvent.received_at <= walk.finished_at)
    events: dict[str, list[ObservedEvent]] = {}
    for device_id, kind, data, at in session.execute(query):
        events.setdefault(device_id, []).append(ObservedEvent(kind, data or {}, at))
    progress = tuple(
        DeviceWalkProgress(
            d.id,
            d.type,
            d.room.name if d.room is not None else None,
            walk_test_progress(d.type, events.get(d.id, ())),
        )
        for d in devices
    )
    return WalkTestStatus(
        walk.id,
        walk.home_id,
        walk.started_by,
        walk.started_at,
        walk.test_mode_until,
        walk.finished_at,
        progress,
    )


def finish_walk_test(
    session: Session,
    walk_test_id: int,
    *,
    now: datetime,
    actor: str,
    end_test_mode: bool = True,
) -> WalkTestStatus:
    """Record who tested what and when, and (by default) take the home out of test mode."""
    walk = _walk(session, walk_test_id)
    if walk.finished_at is not None:
        raise DeviceAdminError(f"walk test {walk.id} was finished already")
    status = walk_test_status(session, walk_test_id)
    walk.finished_at = now
    walk.finished_by = actor
    walk.results = {
        "complete": status.complete,
        "devices": {
            d.device_id: {
                "type": d.type.value,
                "room": d.room,
                "complete": d.complete,
                "items": {
                    i.key: i.done_at.isoformat() if i.done_at is not None else None for i in d.items
                },
            }
            for d in status.devices
        },
    }
    by_id = {d.id: d for d in _home_devices(session, walk.home_id)}
    for progress in status.devices:
        device = by_id[progress.device_id]
        _history(
            session,
            device,
            "walk_test",
            now=now,
            actor=actor,
            walk_test_id=walk.id,
            complete=progress.complete,
            items=walk.results["devices"][device.id]["items"],
        )
    if end_test_mode:
        in_test = [d for d in by_id.values() if d.test_mode_until is not None]
        for device in in_test:
            set_test_mode(session, device_id=device.id, until=None, now=now, actor=actor)
    session.flush()
    return walk_test_status(session, walk_test_id)
