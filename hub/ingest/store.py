"""Database writes of the ingest path: events stored once, device state, discovered and rejected."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, any_, bindparam, delete, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from devices.signing import decode_key
from hub.storage.bulk import insert_new, one_of, update_rows
from hub.storage.db import is_postgres
from hub.storage.models import (
    Device,
    DeviceCredential,
    DeviceType,
    DiscoveredDevice,
    Protocol,
    RejectedMessage,
)
from hub.storage.models import SensorEvent as SensorEventRow


@dataclass(frozen=True, slots=True)
class KnownDevice:
    """What ingest needs to know about a registered device."""

    id: str
    home_id: str
    type: DeviceType
    protocol: Protocol
    z2m_friendly_name: str | None
    online: bool | None
    test_mode_until: datetime | None
    # the last accepted seq; a signed device's next event must carry a greater one
    last_seq: int | None = None
    # the HMAC key of a device that signs its payloads (devices/signing.py); None = unsigned
    hmac_key: bytes | None = None


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """A sensor event that was new (not a duplicate) and is now in the database."""

    id: int
    device_id: str
    home_id: str
    kind: str
    event_ts: datetime | None
    received_at: datetime
    seq: int | None
    data: dict[str, Any]


def _insert(session: Session, table: Any) -> postgresql.Insert | sqlite.Insert:
    if is_postgres(session.get_bind()):
        return postgresql.insert(table)
    return sqlite.insert(table)


_DEVICES: Table = Device.__table__  # type: ignore[assignment]
_CREDENTIALS: Table = DeviceCredential.__table__  # type: ignore[assignment]
_EVENTS: Table = SensorEventRow.__table__  # type: ignore[assignment]
_DEVICE_COLUMNS = ("battery", "tamper", "rssi", "online", "last_seen_at", "last_seq")


# Statements built once: constructing SQLAlchemy expressions per batch costs more than running them.
def _load_devices_stmt(postgres: bool) -> Any:
    """Devices by id or friendly name. On PostgreSQL the two sets are array parameters
    (``= ANY``): one short text psycopg converts once, whatever the number of devices; an
    expanding IN list is a new text for every count (see ``hub.storage.bulk.one_of``)."""
    if postgres:
        by_id = _DEVICES.c.id == any_(bindparam("ids", type_=ARRAY(_DEVICES.c.id.type)))
        by_name = _DEVICES.c.z2m_friendly_name == any_(
            bindparam("names", type_=ARRAY(_DEVICES.c.z2m_friendly_name.type))
        )
    else:
        by_id = _DEVICES.c.id.in_(bindparam("ids", expanding=True))
        by_name = _DEVICES.c.z2m_friendly_name.in_(bindparam("names", expanding=True))
    return (
        select(
            _DEVICES.c.id,
            _DEVICES.c.home_id,
            _DEVICES.c.type,
            _DEVICES.c.protocol,
            _DEVICES.c.z2m_friendly_name,
            _DEVICES.c.online,
            _DEVICES.c.test_mode_until,
            _DEVICES.c.last_seq,
            _CREDENTIALS.c.hmac_key,
        )
        .select_from(
            _DEVICES.outerjoin(
                _CREDENTIALS,
                (_CREDENTIALS.c.device_id == _DEVICES.c.id) & _CREDENTIALS.c.revoked_at.is_(None),
            )
        )
        .where(or_(by_id, by_name), _DEVICES.c.retired_at.is_(None))
    )


_LOAD_DEVICES = {True: _load_devices_stmt(True), False: _load_devices_stmt(False)}


def load_devices(
    session: Session, native_ids: Iterable[str], z2m_names: Iterable[str]
) -> tuple[dict[str, KnownDevice], dict[str, KnownDevice]]:
    """Registered, not retired devices by native id and by Zigbee2MQTT friendly name."""
    native_ids = set(native_ids)
    z2m_names = set(z2m_names)
    by_id: dict[str, KnownDevice] = {}
    by_name: dict[str, KnownDevice] = {}
    if not native_ids and not z2m_names:
        return by_id, by_name
    query = _LOAD_DEVICES[is_postgres(session.get_bind())]
    params = {"ids": sorted(native_ids), "names": sorted(z2m_names)}
    for row in session.connection().execute(query, params):
        key_text = row.hmac_key
        known = KnownDevice(
            id=row.id,
            home_id=row.home_id,
            type=row.type,
            protocol=row.protocol,
            z2m_friendly_name=row.z2m_friendly_name,
            online=row.online,
            test_mode_until=row.test_mode_until,
            last_seq=row.last_seq,
            hmac_key=decode_key(key_text) if key_text else None,
        )
        if known.id in native_ids:
            by_id[known.id] = known
        if known.z2m_friendly_name is not None and known.z2m_friendly_name in z2m_names:
            by_name[known.z2m_friendly_name] = known
    return by_id, by_name


def stored_event_keys(
    session: Session, candidates: Iterable[tuple[str, str]]
) -> frozenset[tuple[str, str]]:
    """Which of the (device id, dedup key) pairs are stored already (replay vs. redelivery)."""
    wanted = set(candidates)
    if not wanted:
        return frozenset()
    query = select(_EVENTS.c.device_id, _EVENTS.c.dedup_key).where(
        one_of(session, _EVENTS.c.device_id, sorted({d for d, _ in wanted})),
        one_of(session, _EVENTS.c.dedup_key, sorted({k for _, k in wanted})),
    )
    found = {(device_id, key) for device_id, key in session.connection().execute(query)}
    return frozenset(found & wanted)


def insert_events(session: Session, rows: Sequence[dict[str, Any]]) -> list[StoredEvent]:
    """Insert sensor events; ones whose (device, dedup_key) already exists are skipped.

    Returns the events that were new, in input order.
    """
    if not rows:
        return []
    inserted = insert_new(
        session,
        _EVENTS,
        rows,
        unique=("device_id", "dedup_key"),
        returning=("id", "device_id", "dedup_key"),
    )
    ids_by_key: dict[tuple[str, str | None], list[int]] = {}
    for event_id, device_id, key in inserted:
        ids_by_key.setdefault((device_id, key), []).append(event_id)
    stored: list[StoredEvent] = []
    for row in rows:
        ids = ids_by_key.get((row["device_id"], row["dedup_key"]))
        if not ids:
            continue
        stored.append(
            StoredEvent(
                id=ids.pop(0),
                device_id=row["device_id"],
                home_id=row["home_id"],
                kind=row["kind"],
                event_ts=row["event_ts"],
                received_at=row["received_at"],
                seq=row["seq"],
                data=row["data"],
            )
        )
    return stored


def update_devices(session: Session, changes: dict[str, dict[str, Any]]) -> None:
    """Apply per-device changes (online, battery, rssi, tamper, last_seen_at, last_seq).

    One statement (``update_rows``); a column a message did not mention keeps its value.
    """
    update_rows(
        session,
        _DEVICES,
        [
            {"id": device_id, **{col: values.get(col) for col in _DEVICE_COLUMNS}}
            for device_id, values in changes.items()
            if values
        ],
        key="id",
        keep_when_none=_DEVICE_COLUMNS,
    )


def upsert_discovered(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Record messages from unregistered devices, one row per (protocol, identifier)."""
    for row in rows:
        stmt = _insert(session, DiscoveredDevice).values(**row, message_count=1)
        excluded = stmt.excluded
        stmt = stmt.on_conflict_do_update(
            index_elements=["protocol", "identifier"],
            set_={
                "last_seen_at": excluded.last_seen_at,
                "last_topic": excluded.last_topic,
                "last_payload": excluded.last_payload,
                "last_kind": excluded.last_kind,
                "home_hint": excluded.home_hint,
                "message_count": DiscoveredDevice.message_count + 1,
            },
        )
        session.execute(stmt)


def insert_rejected(session: Session, rows: Sequence[dict[str, Any]], keep: int) -> None:
    """Keep rejected messages with their reason; only the newest ``keep`` rows are kept."""
    if not rows:
        return
    session.execute(_insert(session, RejectedMessage), list(rows))
    cutoff = session.execute(
        select(RejectedMessage.id).order_by(RejectedMessage.id.desc()).offset(keep).limit(1)
    ).scalar_one_or_none()
    if cutoff is not None:
        session.execute(delete(RejectedMessage).where(RejectedMessage.id <= cutoff))
