"""The alarm lifecycle against SQLite and PostgreSQL: open, join, move, cancel, note, list."""

from __future__ import annotations

import re
import sqlite3
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from hub.alarms import service
from hub.alarms.lifecycle import Outcome, TransitionError
from hub.alarms.service import AlarmNotFound
from hub.rules.model import AlarmType
from hub.storage.models import (
    Alarm,
    AlarmStatus,
    AlarmTimelineEntry,
    DeviceType,
    Protocol,
    Resident,
    Severity,
)
from tests.factories import T0, add_home

NURSE = "user:nurse"
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def kari(session_factory: sessionmaker[Session]) -> int:
    """Kari lives in home h1 with a fall sensor; returns her resident id."""
    add_home(
        session_factory, "h1", devices=[("d-fall", DeviceType.FALL_SENSOR, Protocol.NATIVE, None)]
    )
    with session_factory() as session:
        return session.scalars(select(Resident.id).where(Resident.home_id == "h1")).one()


def raise_fall(
    session: Session, resident_id: int, minutes: float = 0, summary: str = "fall"
) -> tuple[Alarm, bool]:
    return service.open_or_join(
        session,
        now=T0 + timedelta(minutes=minutes),
        resident_id=resident_id,
        home_id="h1",
        type=AlarmType.FALL,
        severity=Severity.RED,
        summary=summary,
        device_id="d-fall",
    )


def timeline(factory: sessionmaker[Session], alarm_id: int) -> list[AlarmTimelineEntry]:
    with factory() as session:
        return list(service.get_alarm(session, alarm_id).timeline)


def test_a_fall_opens_an_alarm_with_its_first_timeline_entry(
    session_factory: sessionmaker[Session], kari: int
) -> None:
    with session_factory() as session, session.begin():
        alarm, created = raise_fall(session, kari, summary="fall detected (confidence 0.93)")
        alarm_id = alarm.id

    assert created
    with session_factory() as session:
        stored = service.get_alarm(session, alarm_id)
        assert (stored.type, stored.severity, stored.status) == (
            "fall",
            Severity.RED,
            AlarmStatus.OPEN,
        )
        assert (stored.opened_at, stored.updated_at, stored.event_count) == (T0, T0, 1)
        assert stored.device_id == "d-fall" and stored.outcome is None
        [entry] = stored.timeline
    assert (entry.kind, entry.from_status, entry.to_status, entry.actor, entry.at) == (
        "transition",
        None,
        "open",
        "hub:rules",
        T0,
    )
    assert entry.detail["summary"] == "fall detected (confidence 0.93)"
    assert entry.detail["device_id"] == "d-fall"


def test_repeated_events_join_the_open_alarm_and_are_counted(
    session_factory: sessionmaker[Session], kari: int
) -> None:
    with session_factory() as session, session.begin():
        first, _ = raise_fall(session, kari)
    with session_factory() as session, session.begin():
        again, created = raise_fall(session, kari, minutes=1, summary="second fall report")

    assert not created and again.id == first.id
    with session_factory() as session:
        stored = service.get_alarm(session, first.id)
        assert stored.event_count == 2
        assert stored.updated_at == T0 + timedelta(minutes=1)
        assert stored.opened_at == T0
        kinds = [(e.kind, e.detail.get("summary")) for e in stored.timeline]
    assert kinds == [("transition", "fall"), ("event_joined", "second fall report")]
    with session_factory() as session:
        assert service.count_alarms(session) == 1


def test_another_type_or_a_closed_alarm_means_a_new_alarm(
    session_factory: sessionmaker[Session], kari: int
) -> None:
    with session_factory() as session, session.begin():
        fall, _ = raise_fall(session, kari)
        button, created = service.open_or_join(
            session,
            now=T0,
            resident_id=kari,
            home_id="h1",
            type=AlarmType.BUTTON,
            severity=Severity.RED,
            summary="button pressed",
        )
        assert created and button.id != fall.id
        service.transition(
            session, fall.id, to=AlarmStatus.RESOLVED, actor=NURSE, now=T0, outcome="test"
        )
    with session_factory() as session, session.begin():
        later, created = raise_fall(session, kari, minutes=30)

    assert created and later.id not in (fall.id, button.id)


def test_the_whole_path_to_resolved_is_four_timeline_entries(
    session_factory: sessionmaker[Session], kari: int
) -> None:
    with session_factory() as session, session.begin():
        alarm, _ = raise_fall(session, kari)
    steps = [
        (1, AlarmStatus.ACKNOWLEDGED, None, "on my way"),
        (14, AlarmStatus.ON_SITE, None, None),
        (40, AlarmStatus.RESOLVED, Outcome.HELPED, "helped her up, no injury"),
    ]
    for minutes, status, outcome, note in steps:
        with session_factory() as session, session.begin():
            service.transition(
                session,
                alarm.id,
                to=status,
                actor=NURSE,
                now=T0 + timedelta(minutes=minutes),
                outcome=outcome,
                note=note,
            )

    with session_factory() as session:
        stored = service.get_alarm(session, alarm.id)
        assert stored.status is AlarmStatus.RESOLVED and stored.outcome == "helped"
        assert stored.updated_at == T0 + timedelta(minutes=40)
        entries = [
            (e.kind, e.from_status, e.to_status, e.actor, e.at - T0, e.detail)
            for e in stored.timeline
        ]
    assert entries == [
        ("transition", None, "open", "hub:rules", timedelta(0), entries[0][5]),
        (
            "transition",
            "open",
            "acknowledged",
            NURSE,
            timedelta(minutes=1),
            {"outcome": None, "note": "on my way"},
        ),
        (
            "transition",
            "acknowledged",
            "on_site",
            NURSE,
            timedelta(minutes=14),
            {"outcome": None, "note": None},
        ),
        (
            "transition",
            "on_site",
            "resolved",
            NURSE,
            timedelta(minutes=40),
            {"outcome": "helped", "note": "helped her up, no injury"},
        ),
    ]


def test_a_refused_transition_changes_nothing(
    session_factory: sessionmaker[Session], kari: int
) -> None:
    with session_factory() as session, session.begin():
        alarm, _ = raise_fall(session, kari)

    with (
        session_factory() as session,
        session.begin(),
        pytest.raises(TransitionError, match="from open to on_site"),
    ):
        service.transition(session, alarm.id, to=AlarmStatus.ON_SITE, actor=NURSE, now=T0)
    with session_factory() as session, pytest.raises(AlarmNotFound, match="alarm 999999 not found"):
        service.transition(session, 999_999, to=AlarmStatus.ACKNOWLEDGED, actor=NURSE, now=T0)

    assert [e.to_status for e in timeline(session_factory, alarm.id)] == ["open"]


def test_a_coordinator_closes_an_untaken_test_alarm_and_is_recorded_as_taker(
    session_factory: sessionmaker[Session], kari: int
) -> None:
    with session_factory() as session, session.begin():
        alarm, _ = raise_fall(session, kari)
        service.transition(
            session, alarm.id, to=AlarmStatus.NOTIFIED, actor="hub:escalation", now=T0
        )
        with pytest.raises(TransitionError, match="acknowledge it first"):
            service.transition(
                session, alarm.id, to=AlarmStatus.RESOLVED, actor=NURSE, now=T0, outcome="helped"
            )
        service.transition(
            session,
            alarm.id,
            to=AlarmStatus.RESOLVED,
            actor="user:coordinator",
            now=T0,
            outcome="test",
        )

    last = timeline(session_factory, alarm.id)[-1]
    assert (last.from_status, last.to_status) == ("notified", "resolved")
    assert last.detail == {"outcome": "test", "note": None, "taken_by": "user:coordinator"}


def test_the_resident_cancels_in_time_but_not_once_a_nurse_has_taken_it(
    session_factory: sessionmaker[Session], kari: int
) -> None:
    with session_factory() as session, session.begin():
        assert (
            service.cancel_open(
                session, resident_id=kari, type="button", now=T0, actor="resident", reason="x"
            )
            is None
        )
        pressed, _ = service.open_or_join(
            session,
            now=T0,
            resident_id=kari,
            home_id="h1",
            type="button",
            severity=Severity.RED,
            summary="press",
        )
        cancelled = service.cancel_open(
            session,
            resident_id=kari,
            type="button",
            now=T0 + timedelta(seconds=20),
            actor="resident:cancel",
            reason="cancel pressed within 30 s",
        )
        assert cancelled is not None and cancelled.id == pressed.id
        assert cancelled.status is AlarmStatus.CANCELLED

        taken, _ = service.open_or_join(
            session,
            now=T0 + timedelta(minutes=5),
            resident_id=kari,
            home_id="h1",
            type="button",
            severity=Severity.RED,
            summary="press",
        )
        service.transition(
            session,
            taken.id,
            to=AlarmStatus.ACKNOWLEDGED,
            actor=NURSE,
            now=T0 + timedelta(minutes=6),
        )
        refused = service.cancel_open(
            session,
            resident_id=kari,
            type="button",
            now=T0 + timedelta(minutes=7),
            actor="resident:cancel",
            reason="cancel pressed",
        )
        assert refused is None

    first = timeline(session_factory, pressed.id)
    assert (first[-1].to_status, first[-1].detail["note"]) == (
        "cancelled",
        "cancel pressed within 30 s",
    )
    second = timeline(session_factory, taken.id)
    assert second[-1].kind == "cancel_refused"
    assert second[-1].detail == {"reason": "cancel pressed", "status": "acknowledged"}
    with session_factory() as session:
        assert service.get_alarm(session, taken.id).status is AlarmStatus.ACKNOWLEDGED


def test_notes_are_appended_and_cannot_forge_a_transition(
    session_factory: sessionmaker[Session], kari: int
) -> None:
    with session_factory() as session, session.begin():
        alarm, _ = raise_fall(session, kari)
        service.add_note(
            session,
            alarm.id,
            now=T0 + timedelta(minutes=2),
            actor="hub:rules",
            kind="condition_cleared",
            detail={"note": "device back online"},
        )
        with pytest.raises(ValueError, match="written by the lifecycle"):
            service.add_note(session, alarm.id, now=T0, actor="x", kind="transition", detail={})
    with session_factory() as session, pytest.raises(AlarmNotFound):
        service.add_note(session, 424242, now=T0, actor="x", kind="note", detail={})

    entries = timeline(session_factory, alarm.id)
    assert [e.kind for e in entries] == ["transition", "condition_cleared"]
    assert entries[1].detail == {"note": "device back online"}


def test_timeline_entries_are_never_updated_or_deleted(
    session_factory: sessionmaker[Session], kari: int
) -> None:
    with session_factory() as session, session.begin():
        alarm, _ = raise_fall(session, kari)
    before = [
        (e.id, e.at, e.kind, e.to_status, e.detail) for e in timeline(session_factory, alarm.id)
    ]
    with session_factory() as session, session.begin():
        raise_fall(session, kari, minutes=1)
        service.transition(
            session,
            alarm.id,
            to=AlarmStatus.ACKNOWLEDGED,
            actor=NURSE,
            now=T0 + timedelta(minutes=2),
        )
        service.transition(
            session,
            alarm.id,
            to=AlarmStatus.RESOLVED,
            actor=NURSE,
            now=T0 + timedelta(minutes=3),
            outcome="false_alarm",
        )

    after = [
        (e.id, e.at, e.kind, e.to_status, e.detail) for e in timeline(session_factory, alarm.id)
    ]
    assert after[: len(before)] == before
    assert len(after) == 4
    # And the database itself refuses a rewrite of history.
    with session_factory() as session, pytest.raises(IntegrityError, match="append-only"):
        session.execute(update(AlarmTimelineEntry).values(actor="someone else"))
        session.flush()


def test_two_hubs_raising_the_same_fall_at_once_make_one_alarm(
    session_factory: sessionmaker[Session], kari: int
) -> None:
    first_flushed = threading.Event()
    errors: list[BaseException] = []

    def first() -> None:
        try:
            with session_factory() as session, session.begin():
                raise_fall(session, kari, summary="hub A")
                first_flushed.set()
                # Hold the transaction open while the other hub tries.
                threading.Event().wait(0.5)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
            first_flushed.set()

    def second() -> None:
        try:
            first_flushed.wait(5)
            with session_factory() as session, session.begin():
                raise_fall(session, kari, summary="hub B")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert errors == []
    with session_factory() as session:
        [alarm] = service.list_alarms(session)
        assert alarm.event_count == 2
        assert [e.kind for e in service.get_alarm(session, alarm.id).timeline] == [
            "transition",
            "event_joined",
        ]


def test_locking_alarms_holds_them_against_another_writer_until_the_commit(
    session_factory: sessionmaker[Session], kari: int
) -> None:
    """``lock_alarm_facts`` reads under a lock no other writer gets past: SQLite's one write
    lock (taken by a no-op write naming one alarm, here one that does not exist) or, on
    PostgreSQL, the rows' own locks."""
    with session_factory() as session, session.begin():
        alarm_id = raise_fall(session, kari)[0].id
    bind = session_factory.kw["bind"]
    with session_factory() as holder, holder.begin():
        facts = service.lock_alarm_facts(holder, [alarm_id, 0])  # 0: no such alarm, locked first
        assert list(facts) == [alarm_id] and facts[alarm_id][1] == AlarmStatus.OPEN
        if bind.dialect.name == "sqlite":
            other = sqlite3.connect(bind.url.database, timeout=0)
            try:
                with pytest.raises(sqlite3.OperationalError, match="database is locked"):
                    other.execute("UPDATE alarms SET summary = 'other' WHERE id = ?", (alarm_id,))
            finally:
                other.close()
        else:
            with (
                session_factory() as second,
                second.begin(),
                pytest.raises(OperationalError, match="could not obtain lock"),
            ):
                second.execute(
                    select(Alarm.id).where(Alarm.id == alarm_id).with_for_update(nowait=True)
                )
    with session_factory() as session, session.begin():  # committed: the lock is gone
        session.execute(update(Alarm).where(Alarm.id == alarm_id).values(summary="other"))


def test_list_filters_by_status_resident_type_and_time(
    session_factory: sessionmaker[Session], kari: int
) -> None:
    add_home(session_factory, "h2", devices=[])
    with session_factory() as session:
        ola = session.scalars(select(Resident.id).where(Resident.home_id == "h2")).one()
    with session_factory() as session, session.begin():
        fall, _ = raise_fall(session, kari)
        door, _ = service.open_or_join(
            session,
            now=T0 + timedelta(hours=1),
            resident_id=kari,
            home_id="h1",
            type="door_night",
            severity=Severity.YELLOW,
            summary="door",
        )
        ola_fall, _ = service.open_or_join(
            session,
            now=T0 + timedelta(hours=2),
            resident_id=ola,
            home_id="h2",
            type="fall",
            severity=Severity.RED,
            summary="fall",
        )
        service.transition(
            session, door.id, to=AlarmStatus.ACKNOWLEDGED, actor=NURSE, now=T0 + timedelta(hours=1)
        )

    def ids(**filters: object) -> list[int]:
        with session_factory() as session:
            return [a.id for a in service.list_alarms(session, **filters)]  # type: ignore[arg-type]

    assert ids() == [ola_fall.id, door.id, fall.id]  # newest first
    assert ids(status=["open"]) == [ola_fall.id, fall.id]
    assert ids(status=["open", "acknowledged"]) == [ola_fall.id, door.id, fall.id]
    assert ids(resident_id=kari) == [door.id, fall.id]
    assert ids(type="fall") == [ola_fall.id, fall.id]
    assert ids(since=T0 + timedelta(hours=1)) == [ola_fall.id, door.id]
    assert ids(until=T0 + timedelta(hours=1)) == [fall.id]
    assert ids(limit=1, offset=1) == [door.id]
    with session_factory() as session:
        assert service.count_alarms(session, type="fall") == 2
        with pytest.raises(ValueError, match="unknown alarm status"):
            service.list_alarms(session, status=["closed"])


def test_only_the_alarm_service_assigns_an_alarm_status() -> None:
    """One place per concept: the lifecycle's adapter is the only writer of Alarm.status."""
    allowed = REPO / "hub" / "alarms" / "service.py"
    # an alarm's status, by attribute or by keyword (other tables have statuses of their own)
    pattern = re.compile(
        r"\balarms?\w*\.status\s*=(?!=)|\bstatus\s*=\s*(AlarmStatus\.|INITIAL_STATUS)"
    )
    offenders = [
        f"{path.relative_to(REPO)}:{number}"
        for package in ("hub", "care_portal", "devices")
        for path in sorted((REPO / package).rglob("*.py"))
        if path != allowed
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line)
    ]
    assert offenders == []
