"""The escalation engine and the outbox sender against real SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from hub.alarms import service as alarms
from hub.clock import FakeClock
from hub.escalation.engine import (
    EscalationContext,
    EscalationEngine,
    alarm_taken,
    due_query,
    start_escalation,
)
from hub.escalation.policy import ensure_default_policies
from hub.notify.sender import Claimed, ProviderError, Sender
from hub.rules.timers import ManualTimer
from hub.storage.db import make_engine, make_sessionmaker
from hub.storage.models import (
    Alarm,
    AlarmEscalation,
    AlarmStatus,
    AlarmTimelineEntry,
    Home,
    Notification,
    Relative,
    RelativeRole,
    Resident,
    Severity,
    ShiftPattern,
    StaffRole,
    StaffUser,
    Zone,
)
from tests.providers import RecordingProvider

OSLO = ZoneInfo("Europe/Oslo")
T0 = datetime(2026, 1, 5, 13, 32, tzinfo=UTC)
CTX = EscalationContext(OSLO, "http://127.0.0.1:8000")


def seed(factory: sessionmaker[Session], residents: int = 1) -> list[int]:
    """Zone Ørje: Nina on duty, Ola off duty, Kristin coordinator; Kari with two relatives."""
    with factory() as s, s.begin():
        zone = Zone(name="Ørje", created_at=T0)
        s.add(zone)
        s.flush()
        users = {}
        for username, role, phone in (
            ("nina", StaffRole.NURSE, "+4790000001"),
            ("ola", StaffRole.NURSE, "+4790000002"),
            ("kristin", StaffRole.COORDINATOR, "+4790000003"),
        ):
            users[username] = StaffUser(
                username=username,
                display_name=username.title(),
                role=role,
                password_hash="x",
                phone=phone,
                zone_id=zone.id,
                active=True,
                created_at=T0,
            )
            s.add(users[username])
        s.flush()
        for weekday in range(7):
            s.add(
                ShiftPattern(
                    zone_id=zone.id,
                    user_id=users["nina"].id,
                    name="all",
                    weekday=weekday,
                    start=time(0, 0),
                    end=time(0, 0),
                )
            )
        ids = []
        for n in range(residents):
            home = Home(id=f"h{n}", zone_id=zone.id, created_at=T0)
            resident = Resident(
                home=home, zone_id=zone.id, label=f"Kari {n}", full_name="Kari", created_at=T0
            )
            s.add_all([home, resident])
            s.add(
                Relative(
                    resident=resident,
                    name="Anne",
                    phone="+4791000001",
                    priority=1,
                    role=RelativeRole.ACTING,
                    created_at=T0,
                )
            )
            s.add(
                Relative(
                    resident=resident,
                    name="Per",
                    phone="+4791000002",
                    priority=2,
                    role=RelativeRole.INFORMED,
                    created_at=T0,
                )
            )
            s.flush()
            ids.append(resident.id)
        ensure_default_policies(s, T0)
        return ids


def open_fall(s: Session, resident_id: int, now: datetime) -> Alarm:
    """A new red fall alarm for the resident, in ``s``'s transaction (``open_or_join``)."""
    resident = s.get(Resident, resident_id)
    assert resident is not None
    alarm, created = alarms.open_or_join(
        s,
        now=now,
        resident_id=resident_id,
        home_id=resident.home_id,
        type="fall",
        severity=Severity.RED,
        summary="fall",
    )
    assert created
    return alarm


def open_alarm(factory: sessionmaker[Session], resident_id: int, now: datetime) -> int:
    with factory() as s, s.begin():
        alarm = open_fall(s, resident_id, now)
        start_escalation(s, alarm, now=now, ctx=CTX)
        return alarm.id


def queued(factory: sessionmaker[Session], alarm_id: int) -> list[tuple[str, str, str | None]]:
    with factory() as s:
        rows = s.scalars(
            select(Notification).where(Notification.alarm_id == alarm_id).order_by(Notification.id)
        ).all()
        return [(r.purpose, r.channel, r.to_number) for r in rows]


def test_a_red_alarm_walks_the_default_policy_step_by_step(
    session_factory: sessionmaker[Session],
) -> None:
    [kari] = seed(session_factory)
    clock = FakeClock(T0)
    engine = EscalationEngine(session_factory, clock, ManualTimer(), CTX)
    alarm_id = open_alarm(session_factory, kari, clock.now())
    assert queued(session_factory, alarm_id) == [("informed", "sms", "+4791000002")]

    assert engine.tick() == 1
    step1 = queued(session_factory, alarm_id)[1:]
    assert step1 == [("alarm", "portal", None), ("alarm", "sms", "+4790000001")]
    with session_factory() as s:
        body = dict(
            s.execute(
                select(Notification.channel, Notification.body).where(
                    Notification.alarm_id == alarm_id, Notification.purpose == "alarm"
                )
            ).all()
        )
        # the board shows the alarm: the portal row keeps no copy of the SMS text
        assert body["portal"] == "" and "Kari 0" in body["sms"]
        alarm = alarms.get_alarm(s, alarm_id)
        esc = s.get(AlarmEscalation, alarm_id)
        assert alarm.status == AlarmStatus.NOTIFIED
        assert esc is not None and esc.next_due_at == T0 + timedelta(minutes=2)

    clock.advance(timedelta(minutes=1, seconds=59))
    assert engine.tick() == 0  # not yet
    clock.advance(timedelta(seconds=1))
    assert engine.tick() == 1
    step2 = queued(session_factory, alarm_id)[3:]
    assert Counter(channel for _p, channel, _to in step2) == {"sms": 3, "voice": 3}
    assert {to for _p, _c, to in step2} == {"+4790000001", "+4790000002", "+4790000003"}


def test_taking_the_alarm_stops_the_escalation_and_tells_the_others(
    session_factory: sessionmaker[Session],
) -> None:
    [kari] = seed(session_factory)
    clock = FakeClock(T0)
    engine = EscalationEngine(session_factory, clock, ManualTimer(), CTX)
    provider = RecordingProvider()
    sender = Sender(session_factory, clock, provider, public_base_url="http://hub")
    alarm_id = open_alarm(session_factory, kari, clock.now())
    engine.tick()
    clock.advance(timedelta(minutes=2))
    engine.tick()
    sender.drain()
    with session_factory() as s, s.begin():
        alarms.transition(
            s, alarm_id, to=AlarmStatus.ACKNOWLEDGED, actor="sms:Ola", now=clock.now()
        )
        alarm = alarms.get_alarm(s, alarm_id)
        alarm_taken(s, alarm, taker="Ola", now=clock.now())
    taken_by = [
        to for purpose, _c, to in queued(session_factory, alarm_id) if purpose == "taken_by"
    ]
    assert sorted(taken_by) == ["+4790000001", "+4790000003"]  # not Ola himself
    clock.advance(timedelta(hours=1))
    assert engine.tick() == 0
    with session_factory() as s:
        esc = s.get(AlarmEscalation, alarm_id)
        assert esc is not None and esc.state == "stopped" and esc.next_due_at is None


def test_a_change_that_takes_nothing_costs_no_write_and_a_taken_alarm_is_stopped(
    session_factory: sessionmaker[Session],
) -> None:
    """``on_alarm_changed`` runs after every change a person makes (a note, a reply that takes
    nothing): when the alarm is still untaken it decides by a read alone (a write would hold
    SQLite's one writer against ingest); when a person took the alarm in the portal, it stops
    the escalation and tells the others."""
    from sqlalchemy import event

    [kari] = seed(session_factory)
    clock = FakeClock(T0)
    engine = EscalationEngine(session_factory, clock, ManualTimer(), CTX)
    alarm_id = open_alarm(session_factory, kari, clock.now())
    engine.tick()
    statements: list[str] = []
    bind = session_factory.kw["bind"]

    def record(*args: object) -> None:
        statements.append(" ".join(str(args[2]).upper().split()))

    event.listen(bind, "before_cursor_execute", record)
    try:
        engine.on_alarm_changed(alarm_id)
    finally:
        event.remove(bind, "before_cursor_execute", record)
    # reads only: no write, and no row lock either (PostgreSQL: FOR UPDATE)
    assert statements and all(
        sql.startswith("SELECT") and "FOR UPDATE" not in sql for sql in statements
    ), statements

    with session_factory() as s, s.begin():
        alarms.transition(
            s, alarm_id, to=AlarmStatus.ACKNOWLEDGED, actor="user:nina", now=clock.now()
        )
    engine.on_alarm_changed(alarm_id)
    with session_factory() as s:
        esc = s.get(AlarmEscalation, alarm_id)
        assert esc is not None and esc.state == "stopped" and esc.next_due_at is None


class FlakyProvider(RecordingProvider):
    """Fails the first ``failures`` calls as a provider outage would."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def send_sms(self, *, to: str, body: str, status_callback: str) -> str:
        if self.failures > 0:
            self.failures -= 1
            raise ProviderError("HTTP 500", transient=True)
        return super().send_sms(to=to, body=body, status_callback=status_callback)


def test_a_provider_outage_is_retried_until_the_sms_goes_out(
    session_factory: sessionmaker[Session],
) -> None:
    [kari] = seed(session_factory)
    clock = FakeClock(T0)
    engine = EscalationEngine(session_factory, clock, ManualTimer(), CTX)
    provider = FlakyProvider(failures=20)
    sender = Sender(session_factory, clock, provider, public_base_url="http://hub")
    alarm_id = open_alarm(session_factory, kari, clock.now())
    engine.tick()
    for _ in range(40):
        sender.drain()
        due = sender.next_due()
        if due is None:
            break
        clock.set(max(due, clock.now()))
    with session_factory() as s:
        statuses = dict(
            s.execute(
                select(Notification.to_number, Notification.status).where(
                    Notification.alarm_id == alarm_id, Notification.channel == "sms"
                )
            ).all()
        )
    assert statuses == {"+4791000002": "sent", "+4790000001": "sent"}
    assert provider.failures == 0


def test_a_sender_that_died_mid_send_is_covered_by_the_next_one(
    session_factory: sessionmaker[Session],
) -> None:
    [kari] = seed(session_factory)
    clock = FakeClock(T0)
    alarm_id = open_alarm(session_factory, kari, clock.now())
    with session_factory() as s, s.begin():  # a sender claimed the row, then its process died
        row = s.scalars(select(Notification).where(Notification.alarm_id == alarm_id)).one()
        row.status = "sending"
        row.updated_at = clock.now()
    provider = RecordingProvider()
    sender = Sender(session_factory, clock, provider, public_base_url="http://hub")
    assert sender.drain() == 0  # too early to call it dead
    clock.advance(timedelta(minutes=3))
    assert sender.drain() == 1
    assert provider.sent == [("sms", "+4791000002", provider.sent[0][2])]


def test_a_queued_sms_goes_out_before_the_housekeeping_and_both_in_one_drain(
    session_factory: sessionmaker[Session],
) -> None:
    """The sender sends what is queued first (a fall's first SMS waits for no housekeeping
    reads); what the housekeeping then requeues goes out in the same drain."""
    kari, anna = seed(session_factory, residents=2)
    clock = FakeClock(T0)
    stuck_id = open_alarm(session_factory, kari, clock.now())
    with session_factory() as s, s.begin():  # a sender claimed it, then its process died
        row = s.scalars(select(Notification).where(Notification.alarm_id == stuck_id)).one()
        row.status = "sending"
        row.updated_at = clock.now()
    clock.advance(timedelta(minutes=3))
    open_alarm(session_factory, anna, clock.now())  # its informed relative's SMS: queued now
    seen_stuck: list[str | None] = []  # the dead sender's row, as each SMS goes out

    class Watching(RecordingProvider):
        def send_sms(self, *, to: str, body: str, status_callback: str) -> str:
            with session_factory() as s:
                seen_stuck.append(s.get_one(Notification, stuck.id).last_error)
            return super().send_sms(to=to, body=body, status_callback=status_callback)

    with session_factory() as s:
        stuck = s.scalars(select(Notification).where(Notification.alarm_id == stuck_id)).one()
    provider = Watching()
    sender = Sender(session_factory, clock, provider, public_base_url="http://hub")
    assert sender.drain() == 2
    # first the queued SMS, the dead sender's row not yet touched; then that row, requeued
    assert seen_stuck[0] is None
    assert seen_stuck[1] is not None and seen_stuck[1].startswith("requeued")
    with session_factory() as s:
        assert s.get_one(Notification, stuck.id).status == "sent"


@pytest.mark.postgres
def test_two_hubs_on_one_postgresql_fire_every_step_exactly_once(pg_url: str) -> None:
    engines = [make_engine(pg_url), make_engine(pg_url)]
    factories = [make_sessionmaker(e) for e in engines]
    residents = seed(factories[0], residents=30)
    clock = FakeClock(T0)
    alarm_ids = [open_alarm(factories[0], r, clock.now()) for r in residents]
    hubs = [EscalationEngine(f, clock, ManualTimer(), CTX) for f in factories]

    def run(hub: EscalationEngine, rounds: int) -> None:
        for _ in range(rounds):
            hub.tick()

    for minutes in (0, 2, 5, 10):
        clock.set(T0 + timedelta(minutes=minutes))
        threads = [threading.Thread(target=run, args=(hub, 5)) for hub in hubs]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    with factories[0]() as s:
        rows = s.execute(
            select(
                Notification.alarm_id,
                Notification.step_index,
                Notification.round,
                Notification.channel,
                Notification.to_number,
            ).where(Notification.purpose == "alarm")
        ).all()
    for e in engines:
        e.dispose()
    counts = Counter(rows)
    assert max(counts.values()) == 1, "a step fired twice"
    steps = {(a, step, rnd) for a, step, rnd, _c, _to in rows}
    # steps 1, 2, 3 of round 1 and step 1 of round 2 for every alarm
    assert steps == {(a, s, r) for a in alarm_ids for s, r in ((0, 1), (1, 1), (2, 1), (0, 2))}


def test_relatives_get_a_signed_link_that_shows_only_this_alarm(
    session_factory: sessionmaker[Session],
) -> None:
    from hub.relative_links import verify_relative_link

    [kari] = seed(session_factory)
    ctx = EscalationContext(OSLO, "https://portal.example", link_secret="s3cret", link_ttl_s=3600)
    with session_factory() as s, s.begin():
        alarm = open_fall(s, kari, T0)
        start_escalation(s, alarm, now=T0, ctx=ctx)
        alarm_id = alarm.id
        [per_id] = [r.id for r in s.scalars(select(Relative)).all() if r.name == "Per"]
    with session_factory() as s:
        [body] = s.scalars(
            select(Notification.body).where(Notification.purpose == "informed")
        ).all()
    link = body.split()[-1]
    assert link.startswith("https://portal.example/r/")
    assert "fall" not in body.lower().replace(link.lower(), "")
    token = link.rsplit("/", 1)[1]
    assert verify_relative_link(token, now=T0, secret="s3cret") == (alarm_id, per_id)
    assert verify_relative_link(token, now=T0 + timedelta(hours=2), secret="s3cret") is None


def test_the_due_query_walks_one_index_in_due_order_without_sorting(
    session_factory: sessionmaker[Session],
) -> None:
    """The tick's query for due steps reads ``ix_alarm_escalations_due`` (state, due time) in
    order and stops at its batch: without it SQLite read every active escalation and sorted
    them, once per batch of a burst."""
    for minutes, r in zip((2, 1, 0), seed(session_factory, residents=3), strict=True):
        open_alarm(session_factory, r, T0 + timedelta(minutes=minutes))  # step 1 due then
    with session_factory() as s, s.begin():
        pg = s.get_bind().dialect.name == "postgresql"
        query = due_query(T0 + timedelta(minutes=5), 2, pg=pg)
        compiled = query.compile(s.get_bind(), compile_kwargs={"literal_binds": True})
        if pg:  # three rows: make the planner show what it would do with many
            s.execute(text("SET LOCAL enable_seqscan = off"))
            plan = " ".join(row[0] for row in s.execute(text(f"EXPLAIN {compiled}")))
            assert "ix_alarm_escalations_due" in plan and "Sort" not in plan, plan
        else:
            plan = " ".join(row[3] for row in s.execute(text(f"EXPLAIN QUERY PLAN {compiled}")))
            assert "ix_alarm_escalations_due" in plan and "TEMP B-TREE" not in plan, plan
        assert [row[0] for row in s.execute(query)] == [3, 2]  # the alarms, oldest due first


def test_one_tick_advances_many_alarms_with_a_constant_number_of_statements(
    session_factory: sessionmaker[Session],
) -> None:
    """The tick is bulk: the statements it runs do not grow with the alarms it advances, and
    every alarm still gets its own messages, timeline entries and 'notified' transition."""
    from sqlalchemy import event

    residents = seed(session_factory, residents=40)
    clock = FakeClock(T0)
    engine = EscalationEngine(session_factory, clock, ManualTimer(), CTX)

    def statements_for(resident_ids: list[int]) -> int:
        for r in resident_ids:
            open_alarm(session_factory, r, clock.now())
        seen: list[str] = []
        bind = session_factory.kw["bind"]

        def count(*args: object) -> None:
            seen.append(str(args[2]))

        event.listen(bind, "before_cursor_execute", count)
        try:
            assert engine.tick() == len(resident_ids)
        finally:
            event.remove(bind, "before_cursor_execute", count)
        clock.advance(timedelta(seconds=1))
        return len(seen)

    few = statements_for(residents[:2])
    many = statements_for(residents[2:])
    # On PostgreSQL the 38 alarms' outbox and timeline rows go by COPY (hub.storage.bulk), which
    # SQLAlchemy's statement events do not see: there "many" is two statements fewer.
    assert many <= few, f"2 alarms took {few} statements, 38 took {many}"
    with session_factory() as s:
        for r in residents:
            alarm = s.scalars(select(Alarm).where(Alarm.resident_id == r)).one()
            assert alarm.status == AlarmStatus.NOTIFIED
            timeline = alarms.get_alarm(s, alarm.id).timeline
            kinds = [(e.kind, e.to_status) for e in timeline]
            # opened, informed relative's SMS, step 1 (portal + SMS to Nina), then notified
            assert kinds == [
                ("transition", "open"),
                ("notification", None),
                ("notification", None),
                ("notification", None),
                ("transition", "notified"),
            ]
            notes = s.scalars(select(Notification).where(Notification.alarm_id == alarm.id)).all()
            named = {e.detail["notification_id"] for e in timeline if e.kind == "notification"}
            assert named == {n.id for n in notes}


@pytest.mark.postgres
def test_a_burst_larger_than_a_batch_runs_in_several_commits_waking_the_sender_after_each(
    session_factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    """More due steps than one transaction takes: one tick runs them all, batch after batch,
    each alarm exactly once, and the sender is woken as each batch commits (not only at the
    end), so the first SMS of a burst do not wait for the last."""
    from hub.escalation import engine as engine_module

    monkeypatch.setattr(engine_module, "DUE_BATCH", 3)
    monkeypatch.setattr(engine_module, "DUE_BATCH_PG", 3)
    monkeypatch.setattr(engine_module, "TICK_WORKERS", 1)  # one thread: the order is known
    residents = seed(session_factory, residents=8)
    clock = FakeClock(T0)
    queued_at_wake: list[int] = []

    def wake() -> None:
        with session_factory() as s:
            queued_at_wake.append(
                len(s.scalars(select(Notification.id).where(Notification.purpose == "alarm")).all())
            )

    engine = EscalationEngine(session_factory, clock, ManualTimer(), CTX, on_outbox=wake)
    for r in residents:
        open_alarm(session_factory, r, clock.now())
    assert engine.tick() == 8
    # batches of 3, 3 and 2 alarms; step 1 writes a portal message and an SMS to Nina each
    assert queued_at_wake == [6, 12, 16]
    with session_factory() as s:
        escalations = s.scalars(select(AlarmEscalation)).all()
        assert [e.step_index for e in escalations] == [1] * 8
        assert all(e.next_due_at == T0 + timedelta(minutes=2) for e in escalations)
    assert engine.tick() == 0


def test_a_burst_on_postgresql_is_run_by_two_threads_at_once_each_step_exactly_once(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL a full first batch brings in a second thread: the two claim different
    alarms (SKIP LOCKED) and have batches in flight at the same time; every alarm's step runs
    exactly once. Each thread's first commit waits at a barrier for the other's: run by one
    thread, the tick would break the barrier (and fail) instead."""
    from hub.escalation import engine as engine_module

    monkeypatch.setattr(engine_module, "DUE_BATCH_PG", 3)
    monkeypatch.setattr(engine_module, "TICK_WORKERS", 2)
    factory = make_sessionmaker(make_engine(pg_url))
    residents = seed(factory, residents=8)
    clock = FakeClock(T0)
    both_in_flight = threading.Barrier(2, timeout=10)
    committed_by: Counter[str] = Counter()

    def wake() -> None:
        name = threading.current_thread().name
        if name not in committed_by:
            both_in_flight.wait()
        committed_by[name] += 1

    engine = EscalationEngine(factory, clock, ManualTimer(), CTX, on_outbox=wake)
    for r in residents:
        open_alarm(factory, r, clock.now())
    assert engine.tick() == 8
    assert len(committed_by) == 2  # both threads committed batches
    with factory() as s:
        escalations = s.scalars(select(AlarmEscalation)).all()
        assert [e.step_index for e in escalations] == [1] * 8
        sent = Counter(
            s.execute(
                select(
                    Notification.alarm_id,
                    Notification.recipient_kind,
                    Notification.recipient_id,
                    Notification.channel,
                )
            ).all()
        )
        assert set(sent.values()) == {1}  # nobody told twice
        assert {alarm for alarm, _kind, _id, channel in sent if channel == "sms"} == {
            e.alarm_id for e in escalations
        }
    assert engine.tick() == 0


def test_an_alarm_a_person_holds_is_left_for_the_next_tick_not_waited_for(pg_url: str) -> None:
    """While a nurse's transaction holds the alarm, the tick skips it (no wait, no deadlock);
    the step runs on the next tick once the lock is gone."""
    engine_db = make_engine(pg_url)
    factory = make_sessionmaker(engine_db)
    try:
        kari, ola = seed(factory, residents=2)
        clock = FakeClock(T0)
        held = open_alarm(factory, kari, clock.now())
        free = open_alarm(factory, ola, clock.now())
        engine = EscalationEngine(factory, clock, ManualTimer(), CTX)
        with factory() as nurse, nurse.begin():
            alarms.lock_alarms(nurse, [held])
            assert engine.tick() == 1  # only the free one
        with factory() as s:
            assert s.get(Alarm, free).status == AlarmStatus.NOTIFIED
            assert s.get(Alarm, held).status == AlarmStatus.OPEN
        assert engine.tick() == 1
        with factory() as s:
            assert s.get(Alarm, held).status == AlarmStatus.NOTIFIED
    finally:
        engine_db.dispose()


def test_alarms_a_transaction_opens_get_their_first_step_in_that_same_commit(
    session_factory: sessionmaker[Session],
) -> None:
    """``alarm_opened`` (the rules' hook) runs step 1 for every alarm of the transaction just
    before it commits; a rolled-back transaction leaves nothing behind for the next one."""
    residents = seed(session_factory, residents=4)
    clock = FakeClock(T0)
    engine = EscalationEngine(session_factory, clock, ManualTimer(), CTX)

    with session_factory() as s:
        with s.begin():
            opened = [_open_in(engine, s, r, clock.now()) for r in residents[:3]]
        with s.begin():
            _open_in(engine, s, residents[3], clock.now())
            s.rollback()
        with s.begin():
            last = _open_in(engine, s, residents[3], clock.now())
    for alarm_id in [*opened, last]:
        # the informed relative's SMS, then step 1: portal + SMS to the nurse on duty
        assert queued(session_factory, alarm_id) == [
            ("informed", "sms", "+4791000002"),
            ("alarm", "portal", None),
            ("alarm", "sms", "+4790000001"),
        ]
        with session_factory() as s:
            assert alarms.get_alarm(s, alarm_id).status == AlarmStatus.NOTIFIED
    assert engine.tick() == 0  # step 2 is two minutes away


def _open_in(engine: EscalationEngine, s: Session, resident_id: int, now: datetime) -> int:
    """Open a fall alarm as the rules do: ``open_or_join``, then the ``alarm_opened`` hook."""
    alarm = open_fall(s, resident_id, now)
    engine.alarm_opened(s, alarm, now)
    return alarm.id


def _rows(factory: sessionmaker[Session], alarm_id: int) -> list[tuple[str, str, str, int]]:
    with factory() as s:
        return [
            (r.purpose, r.channel, r.status, r.attempts)
            for r in s.scalars(
                select(Notification)
                .where(Notification.alarm_id == alarm_id)
                .order_by(Notification.id)
            )
        ]


def test_a_running_sender_gets_the_first_steps_sms_claimed_in_the_alarms_own_commit(
    session_factory: sessionmaker[Session],
) -> None:
    """With a running sender, step 1 writes its SMS already claimed ('sending', attempt 1) in
    the commit that opens the alarm and hands it over once committed: the sender sends it
    without a claim of its own, and it is recorded 'sent' after exactly one attempt. A
    rolled-back transaction hands nothing over. The informed relative's SMS (not a step) is
    queued as before and sent by the same sender."""
    residents = seed(session_factory, residents=3)
    clock = FakeClock(T0)
    engine = EscalationEngine(session_factory, clock, ManualTimer(), CTX)
    handed: list[list[int]] = []
    provider = RecordingProvider()
    sender = Sender(session_factory, clock, provider, public_base_url="http://hub")

    def hand_over(items: Sequence[Claimed]) -> None:
        handed.append([item.id for item in items])
        with session_factory() as s:  # committed before the hand-over, already claimed
            for item in items:
                row = s.get_one(Notification, item.id)
                assert (row.status, row.attempts, row.body) == ("sending", 1, item.body)
                assert (row.to_number, item.attempts) == (item.to_number, 1)
        sender.hand_over(items)

    engine.hand_over = hand_over
    with session_factory() as s:
        with s.begin():
            first = [_open_in(engine, s, r, clock.now()) for r in residents[:2]]
        with s.begin():
            _open_in(engine, s, residents[2], clock.now())
            s.rollback()
    assert len(handed) == 1 and len(handed[0]) == 2  # one commit: both alarms' step-1 SMS
    for alarm_id in first:
        assert _rows(session_factory, alarm_id) == [
            ("informed", "sms", "queued", 0),
            ("alarm", "portal", "sent", 0),
            ("alarm", "sms", "sending", 1),
        ]
    sender.start_background(poll_s=0.05)
    try:
        deadline = threading.Event()
        for _ in range(200):
            if len(provider.sent) == 4:
                break
            deadline.wait(0.05)
    finally:
        sender.stop()
    # the handed-over SMS went first (to the nurse), then the queued ones (to the relative)
    assert [to for _kind, to, _body in provider.sent] == ["+4790000001"] * 2 + ["+4791000002"] * 2
    for alarm_id in first:
        assert _rows(session_factory, alarm_id) == [
            ("informed", "sms", "sent", 1),
            ("alarm", "portal", "sent", 0),
            ("alarm", "sms", "sent", 1),
        ]


def test_handed_over_sms_that_never_went_out_are_sent_after_all(
    session_factory: sessionmaker[Session],
) -> None:
    """The process died after the alarm's commit, before its sender sent what was handed
    over: the row stays 'sending' and the next sender requeues and sends it once
    ``stuck_after_s`` has passed (ADR 8). A sender that stops with messages still in hand
    puts them back to 'queued' (attempt 0), so the next one sends them at once."""
    kari, anna = seed(session_factory, residents=2)
    clock = FakeClock(T0)
    engine = EscalationEngine(session_factory, clock, ManualTimer(), CTX)
    engine.hand_over = lambda items: None  # the process dies right after the commit
    with session_factory() as s, s.begin():
        lost = _open_in(engine, s, kari, clock.now())
    provider = RecordingProvider()
    sender = Sender(session_factory, clock, provider, public_base_url="http://hub")
    assert sender.drain() == 1  # the informed relative's SMS; the step's SMS looks in hand
    clock.advance(timedelta(minutes=3))
    assert sender.drain() == 1
    assert provider.sent[-1][1] == "+4790000001"
    with session_factory() as s:
        row = s.scalars(
            select(Notification).where(
                Notification.alarm_id == lost,
                Notification.purpose == "alarm",
                Notification.channel == "sms",
            )
        ).one()
        assert (row.status, row.attempts) == ("sent", 2)
        results = [
            e.detail.get("result")
            for e in s.scalars(
                select(AlarmTimelineEntry).where(AlarmTimelineEntry.alarm_id == lost)
            )
            if e.kind == "notification_attempt" and e.detail.get("notification_id") == row.id
        ]
        assert results == ["requeued_after_crash", "accepted"]

    stopping = Sender(session_factory, clock, RecordingProvider(), public_base_url="http://hub")
    engine.hand_over = stopping.hand_over
    with session_factory() as s, s.begin():
        kept = _open_in(engine, s, anna, clock.now())
    stopping.stop()  # its loop never ran: what it holds goes back to the outbox
    assert _rows(session_factory, kept)[2] == ("alarm", "sms", "queued", 0)
    before = len(provider.sent)
    assert sender.drain() == 2  # at once, with the informed relative's SMS
    assert {to for _k, to, _b in provider.sent[before:]} == {"+4790000001", "+4791000002"}
    assert _rows(session_factory, kept)[2] == ("alarm", "sms", "sent", 1)
