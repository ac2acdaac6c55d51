"""The timers keep one wake-up each: a stale later wake-up must never replace an earlier one.

The rules' and the escalation's wake-ups are moved from several threads (the ingest worker after
its commit, the timer's own thread after a run, the portal after a person took an alarm). If one
thread read "next due 10:05", another committed "due 10:00" and set the timer to 10:00, and then
the first one set it to 10:05, the 10:00 step would run only at the next safety tick (up to a
minute late). Each test holds one thread between its read and its wake-up and lets the other run.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from hub.clock import FakeClock, SystemClock
from hub.escalation.engine import EscalationEngine
from hub.rules.service import AFTER_COMMIT_EARLIEST, RulesService
from hub.rules.timers import JOB_ID, SchedulerTimer
from hub.storage.models import Alarm, AlarmEscalation, Resident, RuleState
from tests.factories import add_home
from tests.hub.escalation.test_engine import CTX, open_alarm, open_fall, seed

T0 = datetime(2026, 1, 5, 2, 0, tzinfo=UTC)  # 03:00 in Oslo


class HeldTimer:
    """Records every wake-up; the first one asked for is held until ``release`` is set."""

    def __init__(self) -> None:
        self.wakes: list[datetime | None] = []
        self.holding = threading.Event()
        self.release = threading.Event()
        self._first = True

    def start(self, callback: object) -> None:
        pass

    def stop(self) -> None:
        pass

    def wake_at(self, when: datetime | None) -> None:
        if self._first:
            self._first = False
            self.holding.set()
            assert self.release.wait(20)
        self.wakes.append(when)


def _race(timer: HeldTimer, stale: threading.Thread, fresh: threading.Thread) -> None:
    """``stale`` reads and is held before its wake-up; ``fresh`` runs meanwhile; then both end."""
    stale.start()
    assert timer.holding.wait(20)
    fresh.start()
    fresh.join(0.5)  # without the lock it finishes here; with it, it waits for ``stale``
    timer.release.set()
    stale.join(20)
    fresh.join(20)
    assert not stale.is_alive() and not fresh.is_alive()


def _open_via_hook(
    factory: sessionmaker[Session], engine: EscalationEngine, resident_id: int, now: datetime
) -> datetime:
    """Open a fall alarm as the rules do (step 1 runs in its commit); its next step's due time."""
    with factory() as s, s.begin():
        alarm = open_fall(s, resident_id, now)
        engine.alarm_opened(s, alarm, now)
        alarm_id = alarm.id
    with factory() as s:
        esc = s.get_one(AlarmEscalation, alarm_id)
        assert esc.next_due_at is not None
        return esc.next_due_at


def test_an_escalation_due_earlier_is_not_overwritten_by_a_stale_wake_up(
    session_factory: sessionmaker[Session],
) -> None:
    kari, ola = seed(session_factory, residents=2)
    timer = HeldTimer()
    engine = EscalationEngine(session_factory, FakeClock(T0), timer, CTX)
    open_alarm(session_factory, kari, T0 + timedelta(minutes=5))  # step 1 due 03:05
    fresh_due: list[datetime] = []

    def fresh() -> None:  # step 2 due 03:02, committed after the tick's read
        fresh_due.append(_open_via_hook(session_factory, engine, ola, T0))

    _race(timer, threading.Thread(target=engine.tick), threading.Thread(target=fresh))
    assert fresh_due[0] < T0 + timedelta(minutes=5)
    assert timer.wakes[-1] == fresh_due[0]


class CountingTimer:
    """Records every wake-up asked for."""

    def __init__(self) -> None:
        self.wakes: list[datetime | None] = []

    def start(self, callback: object) -> None:
        pass

    def stop(self) -> None:
        pass

    def wake_at(self, when: datetime | None) -> None:
        self.wakes.append(when)


def test_an_opened_alarm_moves_the_escalation_timer_only_when_it_must(
    session_factory: sessionmaker[Session],
) -> None:
    """The commit that opens an alarm sets the timer from what it knows, without a read: a
    wake-up already set earlier stays, a later one moves to the new step's due time. When the
    wake-up set last is past (it may not have fired yet), the next due time is read."""
    anna, berit, kari, ola = seed(session_factory, residents=4)
    clock = FakeClock(T0)
    timer = CountingTimer()
    engine = EscalationEngine(session_factory, clock, timer, CTX)
    open_alarm(session_factory, anna, T0 + timedelta(minutes=1))  # step 1 due 03:01
    engine.tick()  # nothing due yet: the timer goes to 03:01
    assert timer.wakes == [T0 + timedelta(minutes=1)]
    _open_via_hook(session_factory, engine, berit, T0)  # its step 2 is later than 03:01
    assert timer.wakes == [T0 + timedelta(minutes=1)]  # left as it was

    clock.set(T0 + timedelta(minutes=1))
    engine.tick()  # anna's step 1; her step 2 and berit's are next
    first = timer.wakes[-1]
    assert first is not None and first > clock.now()
    due = _open_via_hook(session_factory, engine, kari, clock.now())
    assert due > first and timer.wakes[-1] == first  # still later than the wake-up set

    with session_factory() as s, s.begin():  # another hub's step, due before all of these
        esc = s.get_one(AlarmEscalation, _alarm_of(s, anna))
        esc.next_due_at = first - timedelta(seconds=30)
    clock.set(first + timedelta(seconds=1))  # the wake-up set last is past now
    calls = len(timer.wakes)
    _open_via_hook(session_factory, engine, ola, clock.now())
    assert len(timer.wakes) == calls + 1
    assert timer.wakes[-1] == first - timedelta(seconds=30)  # read: the overdue step first


def _alarm_of(s: Session, resident_id: int) -> int:
    return s.scalars(select(Alarm.id).where(Alarm.resident_id == resident_id)).one()


def test_a_rule_due_earlier_is_not_overwritten_by_a_stale_wake_up(
    session_factory: sessionmaker[Session],
) -> None:
    add_home(session_factory)
    with session_factory() as s, s.begin():
        [resident] = s.query(Resident).all()
        due = T0 + timedelta(minutes=5)
        s.add(RuleState(resident_id=resident.id, state={}, next_due_at=due, updated_at=T0))
    timer = HeldTimer()
    rules = RulesService(session_factory, FakeClock(T0 - timedelta(hours=1)), timer)

    def fresh() -> None:  # an ingest batch committed a state due at 03:00
        rules.after_commit({AFTER_COMMIT_EARLIEST: T0})

    _race(timer, threading.Thread(target=rules.run_due), threading.Thread(target=fresh))
    assert timer.wakes[-1] == T0


def test_a_wake_up_due_while_its_callback_still_runs_is_not_dropped() -> None:
    """The engine's tick sets its next wake-up before it returns. When that step is already
    due, APScheduler meets the job still running; with one instance allowed it skipped the run
    and dropped the date job, and the step waited for the safety tick (seen in the spread
    benchmark on PostgreSQL: 24 commits instead of 10,000 and 58 s p99)."""
    clock = SystemClock()
    timer = SchedulerTimer(clock, safety_tick_s=3600)
    runs: list[datetime] = []
    lock = threading.Lock()
    done = threading.Event()
    pause = threading.Event()

    def tick() -> None:
        with lock:  # as EscalationEngine.tick and RulesService.run_due
            runs.append(clock.now())
            if len(runs) == 5:
                done.set()
                return
            timer.wake_at(clock.now())  # the next step is already due
            pause.wait(0.05)  # the rest of the run: closing its session, …

    timer.start(tick)
    try:
        timer.wake_at(clock.now())
        assert done.wait(10), f"stopped after {len(runs)} run(s)"
    finally:
        timer.stop()


def test_stopping_the_timer_waits_for_the_callback_that_runs() -> None:
    """A tick still running when the hub stops finishes before ``stop`` returns, so nothing
    of it runs after the hub's engine is disposed (the spread benchmark once logged a tick
    that opened a connection to its SQLite file after the file was removed)."""
    clock = SystemClock()
    timer = SchedulerTimer(clock, safety_tick_s=3600)
    started, release, finished = threading.Event(), threading.Event(), threading.Event()

    def tick() -> None:
        started.set()
        release.wait(10)
        finished.set()

    timer.start(tick)
    timer.wake_at(clock.now())
    assert started.wait(10)
    # APScheduler's own thread drops the date job right after handing it to its executor; a
    # shutdown in between makes that thread fail to find it (an unrelated race of the test)
    gone = threading.Event()
    for _ in range(200):
        if timer._scheduler.get_job(JOB_ID) is None:
            gone.set()
            break
        gone.wait(0.01)
    assert gone.is_set()
    threading.Timer(0.2, release.set).start()  # the tick ends a little after stop is called
    timer.stop()
    assert finished.is_set()
