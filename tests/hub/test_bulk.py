"""``hub.storage.bulk.append_rows``: COPY on PostgreSQL stores exactly what the INSERT stores —
personal fields encrypted, times in UTC, JSON as JSON — on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, Table, event, func, insert, select, text
from sqlalchemy.orm import Session, sessionmaker

from hub.alarms import service as alarms
from hub.storage.bulk import (
    COPY_MIN_ROWS,
    append_rows,
    insert_new,
    one_of,
    reserve_ids,
    update_rows,
)
from hub.storage.crypto import configure_keys, generate_key
from hub.storage.db import make_engine, transaction
from hub.storage.models import (
    AlarmTimelineEntry,
    Device,
    Notification,
    Resident,
    RuleState,
    SensorEvent,
    Severity,
)
from tests.factories import T0, add_home

NOTIFICATIONS = cast(Table, Notification.__table__)
TIMELINE = cast(Table, AlarmTimelineEntry.__table__)
EVENTS = cast(Table, SensorEvent.__table__)
DEVICES = cast(Table, Device.__table__)
STATES = cast(Table, RuleState.__table__)
OSLO = ZoneInfo("Europe/Oslo")


@pytest.fixture(autouse=True)
def _keys(restore_key_ring: None) -> None:
    configure_keys([generate_key()])


def _alarm(factory: sessionmaker[Session]) -> int:
    add_home(factory, devices=())
    with transaction(factory) as session:
        resident = session.scalars(select(Resident)).one()
        alarm, _ = alarms.open_or_join(
            session,
            now=T0,
            resident_id=resident.id,
            home_id=resident.home_id,
            type="fall",
            severity=Severity.RED,
            summary="fall",
        )
        return alarm.id


def _outbox(alarm_id: int, n: int, mark: str) -> list[dict[str, Any]]:
    rows = []
    for k in range(n):
        sms = k % 2 == 0
        rows.append(
            {
                "alarm_id": alarm_id,
                "channel": "sms" if sms else "portal",
                "purpose": mark,
                "recipient_kind": "staff",
                "recipient_id": k,
                "to_number": f"+479000{k:04d}" if sms else None,
                "body": f"CareHub: Fall - Kari N. ({k})" if sms else "",
                "status": "queued" if sms else "sent",
                "attempts": 0,
                "next_attempt_at": T0 + timedelta(seconds=k) if sms else None,
                "step_index": k % 3 or None,
                "round": 1,
                "created_at": T0,
                "updated_at": T0,
            }
        )
    return rows


def _timeline(alarm_id: int, n: int, mark: str) -> list[dict[str, Any]]:
    return [
        {
            "alarm_id": alarm_id,
            "at": T0 + timedelta(milliseconds=k),
            "actor": "system:escalation",
            "kind": mark,
            "from_status": None,
            "to_status": "notified" if k % 2 else None,
            "detail": {"note": f"Per Nordmann called back {k}", "by": "nina", "step": None},
        }
        for k in range(n)
    ]


def _read(factory: sessionmaker[Session], mark: str) -> tuple[list[Any], list[Any]]:
    """What the ORM reads back (decrypted), without ids, for rows written with ``mark``."""
    with factory() as session:
        outbox = [
            (
                *(n.channel, n.recipient_id, n.to_number, n.body, n.status),
                *(n.next_attempt_at, n.step_index, n.round, n.created_at),
            )
            for n in session.scalars(
                select(Notification).where(Notification.purpose == mark).order_by(Notification.id)
            )
        ]
        timeline = [
            (e.at, e.actor, e.from_status, e.to_status, e.detail)
            for e in session.scalars(
                select(AlarmTimelineEntry)
                .where(AlarmTimelineEntry.kind == mark)
                .order_by(AlarmTimelineEntry.id)
            )
        ]
    return outbox, timeline


@pytest.mark.parametrize("rows", [COPY_MIN_ROWS + 10, 3], ids=["many", "few"])
def test_appended_rows_read_back_exactly_as_inserted_ones_and_stay_encrypted(
    engine: Engine, session_factory: sessionmaker[Session], rows: int
) -> None:
    alarm_id = _alarm(session_factory)
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    with transaction(session_factory) as session:
        session.execute(insert(NOTIFICATIONS), _outbox(alarm_id, rows, "insert"))
        session.execute(insert(TIMELINE), _timeline(alarm_id, rows, "insert"))
    event.listen(engine, "before_cursor_execute", seen)
    with transaction(session_factory) as session:
        append_rows(session, NOTIFICATIONS, _outbox(alarm_id, rows, "append"))
        append_rows(session, TIMELINE, _timeline(alarm_id, rows, "append"))
    event.remove(engine, "before_cursor_execute", seen)

    assert _read(session_factory, "append") == _read(session_factory, "insert")
    inserts = [s for s in statements if s.lstrip().upper().startswith("INSERT")]
    copied = engine.dialect.name == "postgresql" and rows >= COPY_MIN_ROWS
    assert len(inserts) == (0 if copied else 2)  # COPY goes past SQLAlchemy's statements

    with engine.connect() as connection:
        raw = connection.execute(
            text("SELECT to_number, body FROM notifications WHERE purpose = 'append'")
        ).all()
        details = connection.execute(
            text("SELECT detail FROM alarm_timeline WHERE kind = 'append'")
        ).scalars()
        stored = [d if isinstance(d, dict) else json.loads(d) for d in details]
    assert len(raw) == rows
    for number, body in raw:
        if number is None:  # a portal row: no number, no text
            assert body == "v0:"
        else:
            assert number.startswith("v2:") and body.startswith("v2:") and "Kari" not in body
    for detail in stored:
        assert detail["note"].startswith("v2:") and detail["by"] == "nina"
        assert detail["step"] is None


def test_a_shared_column_stores_one_ciphertext_per_value_and_texts_stay_apart(
    engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    """``shared=("to_number",)``: the rows to one number carry one ciphertext (per call); the
    texts, not shared, are each encrypted on their own even when equal."""
    alarm_id = _alarm(session_factory)
    rows = _outbox(alarm_id, COPY_MIN_ROWS + 10, "shared")
    for row in rows:
        if row["channel"] == "sms":
            row["to_number"], row["body"] = "+4790000001", "CareHub: Fall - Kari N."
    with transaction(session_factory) as session:
        append_rows(session, NOTIFICATIONS, rows, shared=("to_number",))
    with engine.connect() as connection:
        raw = connection.execute(
            text(
                "SELECT to_number, body FROM notifications"
                " WHERE purpose = 'shared' AND channel = 'sms'"
            )
        ).all()
    assert len(raw) == (COPY_MIN_ROWS + 10 + 1) // 2
    assert len({number for number, _body in raw}) == 1
    assert len({body for _number, body in raw}) == len(raw)
    with session_factory() as session:
        read = session.scalars(select(Notification).where(Notification.purpose == "shared")).all()
        assert {n.to_number for n in read if n.channel == "sms"} == {"+4790000001"}


def test_reserved_ids_are_new_and_distinct_and_sqlite_needs_a_write_first(
    engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    alarm_id = _alarm(session_factory)
    with transaction(session_factory) as session:
        session.execute(insert(NOTIFICATIONS), _outbox(alarm_id, 2, "before"))
    with transaction(session_factory) as session:
        if engine.dialect.name == "sqlite":
            with pytest.raises(RuntimeError, match="before this transaction wrote"):
                reserve_ids(session, NOTIFICATIONS, 3)
            session.execute(text("UPDATE alarms SET id = id"))  # takes SQLite's write lock
        first = reserve_ids(session, NOTIFICATIONS, 3)
        rows = [{"id": n, **row} for n, row in zip(first, _outbox(alarm_id, 3, "x"), strict=True)]
        append_rows(session, NOTIFICATIONS, rows)
        assert reserve_ids(session, NOTIFICATIONS, 0) == []
    with transaction(session_factory) as session:
        session.execute(text("UPDATE alarms SET id = id"))
        second = reserve_ids(session, NOTIFICATIONS, 2)
        ids = set(session.scalars(select(Notification.id)))
    assert len(set(first)) == 3 and set(first) <= ids
    assert not set(second) & ids  # not taken: neither by the rows before nor by `first`


def test_one_of_finds_the_same_rows_on_both_databases(
    session_factory: sessionmaker[Session],
) -> None:
    alarm_id = _alarm(session_factory)
    with transaction(session_factory) as session:
        append_rows(session, NOTIFICATIONS, _outbox(alarm_id, 6, "one_of"))
    with session_factory() as session:
        ids = sorted(session.scalars(select(Notification.id)))
        wanted = [*ids[1:4], 10**9]  # one that does not exist
        found = session.scalars(
            select(Notification.id).where(one_of(session, Notification.id, wanted))
        ).all()
        assert sorted(found) == ids[1:4]
        assert (
            session.scalars(
                select(Notification.id).where(one_of(session, Notification.id, []))
            ).all()
            == []
        )


@pytest.mark.postgres
def test_postgresql_connections_prepare_no_statements(pg_url: str) -> None:
    """The hub's engine never prepares a statement on the server (a generic plan made on
    stale statistics walked every open alarm): a query run 10 times stays unprepared."""
    engine = make_engine(pg_url)
    try:
        with engine.connect() as connection:
            for _ in range(10):
                connection.execute(select(Notification.id).where(Notification.alarm_id == 1))
            prepared = connection.execute(text("SELECT count(*) FROM pg_prepared_statements"))
            assert prepared.scalar() == 0
    finally:
        engine.dispose()


def _event(k: int, key: str | None, **over: Any) -> dict[str, Any]:
    row = {
        "device_id": "d-fall" if k % 2 else "d-door",
        "home_id": "h1",
        "kind": "fall" if k % 2 else "door",
        "event_ts": (T0 + timedelta(seconds=k)).astimezone(OSLO) if k % 3 else None,
        "received_at": T0 + timedelta(seconds=k, microseconds=123),
        "seq": 2**40 + k if k % 4 else None,
        "dedup_key": key,
        "data": {"open": bool(k % 2), "note": 'quote " comma , brace { } \\ æøå', "n": k},
    }
    row.update(over)
    return row


def test_insert_new_stores_each_row_once_and_returns_only_the_new_ones(
    session_factory: sessionmaker[Session],
) -> None:
    """``insert_new`` (arrays and unnest on PostgreSQL, executemany on SQLite): awkward text,
    NULLs, times in another zone and JSON come back exactly; a row that conflicts on the
    unique columns is skipped, also against a row of the same call; only new rows return."""
    add_home(session_factory)
    awkward = ['{"a",b}', "back\\slash", "NULL", "", 'æøå, "quoted"', None, None]
    first = [_event(k, key) for k, key in enumerate(awkward)]
    with transaction(session_factory) as session:
        returned = insert_new(
            session, EVENTS, first, unique=("device_id", "dedup_key"), returning=("id", "dedup_key")
        )
    assert [key for _, key in returned] == awkward  # NULL keys never conflict
    ids = [event_id for event_id, _ in returned]
    assert len(set(ids)) == len(ids)
    with session_factory() as session:
        stored = {row.id: row for row in session.execute(select(EVENTS)).all()}
    for event_id, row in zip(ids, first, strict=True):
        got = stored[event_id]._asdict()
        del got["id"]
        assert got == row  # aware times compare as instants
    again = [
        _event(0, awkward[0]),  # stored already
        _event(1, awkward[1], data={"changed": True}),  # stored already: the first one stays
        _event(2, "fresh"),
        _event(4, "fresh"),  # same device as the one before: conflicts within the call
        _event(5, None),
    ]
    with transaction(session_factory) as session:
        returned = insert_new(
            session, EVENTS, again, unique=("device_id", "dedup_key"), returning=("dedup_key",)
        )
    assert returned == [("fresh",), (None,)]
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(EVENTS)) == len(awkward) + 2
        kept = session.scalar(select(EVENTS.c.data).where(EVENTS.c.dedup_key == awkward[1]))
        assert kept == first[1]["data"]
    with transaction(session_factory) as session:
        assert insert_new(session, EVENTS, [], unique=("device_id",), returning=("id",)) == []


def test_update_rows_writes_each_named_row_and_keeps_what_it_is_told_to_keep(
    session_factory: sessionmaker[Session],
) -> None:
    """``update_rows`` (one UPDATE from arrays on PostgreSQL, executemany on SQLite): each row
    gets its own values, times in another zone and JSON come back exactly, a None keeps the
    column's value where asked (and is written as NULL where not), unnamed rows stay as they
    were, and a key named twice is refused before anything is written."""
    add_home(session_factory)
    with session_factory() as session:
        resident_id = session.scalars(select(Resident.id)).one()
    known = [
        {"id": device_id, "battery": 90 + k, "rssi": -50 - k, "last_seen_at": T0}
        for k, device_id in enumerate(("d-fall", "d-door", "z-door", "z-radar"))
    ]
    with transaction(session_factory) as session:
        update_rows(session, DEVICES, known, key="id")
        session.add(RuleState(resident_id=resident_id, state={}, next_due_at=T0, updated_at=T0))
    with session_factory() as session:
        before = {row.id: row for row in session.execute(select(DEVICES)).all()}
    assert before["z-door"].battery == 92 and before["d-door"].rssi == -51
    seen = (T0 + timedelta(minutes=5)).astimezone(OSLO)
    with transaction(session_factory) as session:
        update_rows(
            session,
            DEVICES,
            [
                {"id": "d-door", "battery": 41, "rssi": None, "last_seen_at": seen},
                {"id": "z-door", "battery": None, "rssi": -70, "last_seen_at": None},
            ],
            key="id",
            keep_when_none=("battery", "rssi", "last_seen_at"),
        )
    with session_factory() as session:
        after = {row.id: row for row in session.execute(select(DEVICES)).all()}
    assert (after["d-door"].battery, after["d-door"].rssi) == (41, before["d-door"].rssi)
    assert after["d-door"].last_seen_at == seen  # an aware time compares as an instant
    assert (after["z-door"].battery, after["z-door"].rssi) == (before["z-door"].battery, -70)
    assert after["z-door"].last_seen_at == before["z-door"].last_seen_at
    assert after["d-fall"] == before["d-fall"] and after["z-radar"] == before["z-radar"]

    state = {"door": {"open": True, "since": "2026-11-25T01:02:03+00:00"}, "note": 'æ " \\ {'}
    with transaction(session_factory) as session:
        update_rows(
            session,
            STATES,
            [{"resident_id": resident_id, "state": state, "next_due_at": None, "updated_at": seen}],
            key="resident_id",
        )
    with session_factory() as session:
        row = session.execute(select(STATES)).one()
    assert (row.state, row.next_due_at, row.updated_at) == (state, None, seen)  # None written

    twice = [{"id": "d-door", "battery": 1}, {"id": "d-door", "battery": 2}]
    with pytest.raises(ValueError, match="id named twice"), transaction(session_factory) as session:
        update_rows(session, DEVICES, twice, key="id", keep_when_none=("battery",))
    with transaction(session_factory) as session:
        update_rows(session, DEVICES, [], key="id")  # nothing to write: no statement
    with session_factory() as session:
        assert session.scalar(select(DEVICES.c.battery).where(DEVICES.c.id == "d-door")) == 41


def test_json_documents_of_many_rows_each_land_on_their_own_row(
    session_factory: sessionmaker[Session],
) -> None:
    """PostgreSQL builds a JSON column's array on the server from one JSON array text
    (``hub.storage.bulk._array_casts``); each row must still get its own document, including
    awkward text, nesting, an empty document and JSON null, and the rows come in an order
    unlike the key order."""
    homes = [f"h{k}" for k in range(12)]
    for home_id in homes:
        add_home(session_factory, home_id, devices=())
    with session_factory() as session:
        residents = list(session.scalars(select(Resident.id).order_by(Resident.id.desc())))
    with transaction(session_factory) as session:
        for rid in residents:
            session.add(RuleState(resident_id=rid, state={}, next_due_at=None, updated_at=T0))

    def doc(k: int) -> Any:
        if k == 3:
            return {}
        return {"k": k, "text": f'row {k}: " \\ , {{ }} æøå', "nested": {"list": [k, None, "x"]}}

    rows = [
        {
            "resident_id": rid,
            "state": doc(k),
            "next_due_at": T0 + timedelta(seconds=k),
            "updated_at": T0,
        }
        for k, rid in enumerate(residents)
    ]
    with transaction(session_factory) as session:
        update_rows(session, STATES, rows, key="resident_id")
    with session_factory() as session:
        stored = {r.resident_id: (r.state, r.next_due_at) for r in session.execute(select(STATES))}
    assert stored == {row["resident_id"]: (row["state"], row["next_due_at"]) for row in rows}

    add_home(session_factory, "h-events")
    events = [_event(k, f"key-{k}", home_id="h-events", data=doc(k)) for k in range(9)]
    with transaction(session_factory) as session:
        returned = insert_new(
            session, EVENTS, events, unique=("device_id", "dedup_key"), returning=("dedup_key",)
        )
    assert len(returned) == len(events)
    with session_factory() as session:
        data = {
            key: value for key, value in session.execute(select(EVENTS.c.dedup_key, EVENTS.c.data))
        }
    assert data == {event["dedup_key"]: event["data"] for event in events}
