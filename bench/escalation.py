"""Escalation benchmarks: fall → first SMS at the Twilio simulator under load; steps due at once."""

from __future__ import annotations

import cProfile
import gc
import io
import json
import pstats
import re
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import event, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from bench.ingest import percentile, publish, wait_for
from bench.machine import fsync_ms, python_loop_ms
from bench.publisher import LOAD_DEVICES, fall_device, rules_home
from bench.rules import NIGHT, _CommitStamp, _sqlite_database, seed_homes
from bench.simulator import SimulatorProcess
from hub.alarms.service import open_or_join
from hub.broker import MosquittoProcess, free_port
from hub.clock import FakeClock, SystemClock
from hub.config import (
    DatabaseSettings,
    MqttSettings,
    PortalSettings,
    SecuritySettings,
    Settings,
)
from hub.escalation import engine as engine_module
from hub.escalation.engine import ACTIVE, start_escalation
from hub.escalation.policy import ensure_default_policies
from hub.rules.timers import ManualTimer
from hub.runtime import HubRuntime
from hub.storage import migrate
from hub.storage.crypto import generate_key
from hub.storage.models import (
    AlarmEscalation,
    Notification,
    Severity,
    ShiftPattern,
    StaffRole,
    StaffUser,
)

CLOCK = SystemClock()
SID = "AC" + "b" * 32
TOKEN = "bench-token"
# Personal fields are encrypted as in production (SMS bodies and numbers, names in the timeline);
# a key made for this run only.
SECURITY = SecuritySettings(data_keys=[generate_key()])
NURSE_PHONE = "+4790000001"
ZONE_ID = 1  # the zone bench.rules.seed_homes creates
ALARM_CHUNK = 500  # alarms opened (with their escalation started) per transaction
WAIT_S = 10.0
# the spread run: 10,000 escalating alarms whose next step falls due within two minutes (the
# default policy's wait between steps), i.e. alarms that opened within those two minutes
SPREAD_S = 120.0
# the staff SMS of a fall: "CareHub <severity>: Fall - Resident 17. Svar 1 …" (nb and en)
FALL_SMS = re.compile(r": Fall - Resident (\d+)\. ")


@dataclass
class SmsRun:
    """Fall published → first SMS request received by the simulator, under background load."""

    target: str  # "hub sqlite", "hub postgresql"
    homes: int
    load_rate: float  # offered background events/s
    load_events: int
    load_committed: int
    load_throughput: float  # background events committed per second
    load_p99_ms: float
    falls: int
    sms: int  # falls whose SMS reached the simulator (must equal falls)
    p50_ms: float
    p99_ms: float
    max_ms: float
    # the same path in two parts: fall sent → its alarm committed, alarm committed → SMS received
    alarm_p50_ms: float
    alarm_p99_ms: float
    to_sms_p50_ms: float
    to_sms_p99_ms: float
    python_loop_ms: float  # the machine's speed right before the load (bench.machine)
    fsync_ms: float  # the disk's flush time right before the load (bench.machine)
    # share of the load's wall time the ingest worker spent in its transactions (near 1:
    # saturated, and a fall waits behind big batches)
    worker_busy: float


@dataclass
class StepRun:
    """One ``EscalationEngine.tick()`` running ``steps`` escalation steps that are all due now."""

    target: str  # "sqlite", "postgresql"
    alarms: int
    seed_s: float  # opening the alarms and starting their escalations (not measured below)
    steps: int  # steps the tick ran
    queued: int  # notifications the steps wrote (portal + SMS per alarm)
    tick_s: float
    steps_per_s: float
    p50_lag_ms: float
    p99_lag_ms: float
    max_lag_ms: float
    commits: int  # transactions the tick committed
    python_loop_ms: float  # the machine's speed right before the timed part (bench.machine)
    fsync_ms: float  # the disk's flush time right before the timed part (bench.machine)


def _wait(ready: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = CLOCK.monotonic() + timeout
    pause = threading.Event()
    while not ready():
        if CLOCK.monotonic() > deadline:
            raise RuntimeError(what)
        pause.wait(0.02)


def _portal_up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code in (200, 503)
    except httpx.HTTPError:
        return False


# -- seeding ----------------------------------------------------------------------------------
def seed_nurse(session_factory: sessionmaker[Session], now: datetime) -> None:
    """One nurse with a phone, on duty in the bench zone around the clock, every day."""
    with session_factory() as s, s.begin():
        nurse = StaffUser(
            username="bench-nurse",
            display_name="Bench Sykepleier",
            role=StaffRole.NURSE,
            password_hash="x",
            phone=NURSE_PHONE,
            zone_id=ZONE_ID,
            active=True,
            created_at=now,
        )
        s.add(nurse)
        s.flush()
        s.add_all(
            ShiftPattern(
                zone_id=ZONE_ID,
                user_id=nurse.id,
                name="all",
                weekday=weekday,
                start=time(0, 0),
                end=time(0, 0),
            )
            for weekday in range(7)
        )


# -- fall → first SMS under load --------------------------------------------------------------
def measure_fall_sms(
    broker: MosquittoProcess,
    db_url: str,
    label: str,
    *,
    homes: int,
    rate: float,
    seconds: float,
    falls: int,
    work: Path,
) -> SmsRun:
    """The real hub on the system clock (SchedulerTimer, background sender, portal for status
    callbacks), the simulator in its own process, a load of door/motion events and spread
    falls."""
    migrate.upgrade(db_url)
    portal_port = free_port()
    portal_url = f"http://127.0.0.1:{portal_port}"
    sim = SimulatorProcess(account_sid=SID, auth_token=TOKEN, portal_url=portal_url)
    sim.start()
    settings = Settings(
        mqtt=MqttSettings(host=broker.host, port=broker.port, client_id=f"bench-esc-{label}"),
        database=DatabaseSettings(url=db_url),
        portal=PortalSettings(port=portal_port, public_base_url=portal_url),
        twilio=sim.twilio_settings(),
        security=SECURITY,
    )
    stamp = _CommitStamp()  # background load: send → commit, to show whether the hub keeps up
    runtime = HubRuntime(settings, sinks=[stamp])
    seed_homes(runtime.session_factory, homes, CLOCK.now())
    seed_nurse(runtime.session_factory, CLOCK.now())
    portal_stop = threading.Event()
    portal = threading.Thread(target=runtime.serve_portal, args=(portal_stop,), daemon=True)
    out = work / f"esc-{label}.json"
    try:
        runtime.start()
        if not runtime.ingest.wait_connected(WAIT_S):
            raise RuntimeError("the hub did not connect to the broker")
        portal.start()
        _wait(lambda: _portal_up(portal_url), WAIT_S, "the portal did not start")
        warm = len(LOAD_DEVICES) * homes  # every resident's rule state exists before timing
        publish(broker.port, warm, rate, 0, homes, work / f"warm-{label}.json", "--fleet", "rules")
        wait_for(stamp.done, warm, 60)
        stamp.done.clear()
        yardstick, flush = python_loop_ms(), fsync_ms()  # the hub is idle now
        count = int(rate * seconds)
        busy_before, load_start = runtime.ingest.busy_s, CLOCK.monotonic()
        publish(broker.port, count, rate, 0, homes, out, "--fleet", "rules", "--falls", str(falls))
        wait_for(stamp.done, count, 120)
        busy = (runtime.ingest.busy_s - busy_before) / (CLOCK.monotonic() - load_start)
        deadline = CLOCK.monotonic() + 60
        pause = threading.Event()
        while len(_first_sms(sim)) < falls and CLOCK.monotonic() < deadline:
            pause.wait(0.05)
    finally:
        sim.stop()  # first: no status callback then goes to a portal that is already gone
        portal_stop.set()
        portal.join(WAIT_S)
        runtime.stop()
    sent: dict[str, float] = json.loads(out.read_text())
    first = _first_sms(sim)
    fall_ms, alarm_ms, to_sms_ms = [], [], []
    for k in range(falls):
        key = f"{fall_device(k)[1]}/1"
        if key in sent and k in first:
            fall_ms.append((first[k] - sent[key]) * 1000)
        if key in sent and key in stamp.falls:
            alarm_ms.append((stamp.falls[key] - sent[key]) * 1000)
            if k in first:
                to_sms_ms.append((first[k] - stamp.falls[key]) * 1000)
    load_sent = {k: t for k, t in sent.items() if not k.split("/")[0].endswith("-fall")}
    load_ms = [(stamp.done[k] - t) * 1000 for k, t in load_sent.items() if k in stamp.done]
    t_first = min(load_sent.values())
    t_last = max(stamp.done.values(), default=t_first)
    return SmsRun(
        target=f"hub {label}",
        homes=homes,
        load_rate=rate,
        load_events=len(load_sent),
        load_committed=len(load_ms),
        load_throughput=len(load_ms) / (t_last - t_first) if t_last > t_first else 0.0,
        load_p99_ms=percentile(load_ms, 0.99),
        falls=falls,
        sms=len(fall_ms),
        p50_ms=percentile(fall_ms, 0.50),
        p99_ms=percentile(fall_ms, 0.99),
        max_ms=max(fall_ms, default=float("nan")),
        alarm_p50_ms=percentile(alarm_ms, 0.50),
        alarm_p99_ms=percentile(alarm_ms, 0.99),
        to_sms_p50_ms=percentile(to_sms_ms, 0.50),
        to_sms_p99_ms=percentile(to_sms_ms, 0.99),
        python_loop_ms=yardstick,
        fsync_ms=flush,
        worker_busy=busy,
    )


def _first_sms(sim: SimulatorProcess) -> dict[int, float]:
    """Resident index → arrival of the first fall SMS naming that resident."""
    first: dict[int, float] = {}
    for at, to, body in list(sim.arrivals):
        match = FALL_SMS.search(body)
        if to == NURSE_PHONE and match:
            first.setdefault(int(match.group(1)), at)
    return first


# -- many escalation steps due at once --------------------------------------------------------
class _NoProvider:
    """A provider double: nothing is sent in the step benchmark (the sender is not run)."""

    def send_sms(self, *, to: str, body: str, status_callback: str) -> str:
        raise AssertionError("the step benchmark sends nothing")

    def start_call(self, *, to: str, twiml_url: str, status_callback: str) -> str:
        raise AssertionError("the step benchmark sends nothing")


def _open_alarms(runtime: HubRuntime, alarms: int, now: datetime) -> None:
    """A red fall alarm for each resident, its escalation started: step 1 due at ``now``."""
    ctx = runtime.escalation.ctx
    for start in range(0, alarms, ALARM_CHUNK):
        with runtime.session_factory() as s, s.begin():
            for h in range(start, min(alarms, start + ALARM_CHUNK)):
                alarm, created = open_or_join(
                    s,
                    now=now,
                    resident_id=h + 1,
                    home_id=rules_home(h),
                    type="fall",
                    severity=Severity.RED,
                    summary="bench fall",
                    device_id=fall_device(h)[1],
                )
                assert created
                start_escalation(s, alarm, now=now, ctx=ctx)


def _escalating(runtime: HubRuntime, alarms: int, now: datetime) -> float:
    """Seed ``alarms`` homes and the nurse, then open a red fall alarm for each with its
    escalation started (step 1 due at ``now``); returns the seconds the opening took."""
    factory = runtime.session_factory
    seed_homes(factory, alarms, now)
    seed_nurse(factory, now)
    with factory() as s, s.begin():
        ensure_default_policies(s, now)
    t0 = CLOCK.monotonic()
    _open_alarms(runtime, alarms, now)
    return CLOCK.monotonic() - t0


def measure_steps(
    db_url: str, label: str, alarms: int, profile: bool = False
) -> tuple[StepRun, str]:
    """Open ``alarms`` alarms whose first step is due at 23:00 (FakeClock, ManualTimer), then
    time one ``EscalationEngine.tick()`` from the due moment; a step's lag is the commit of the
    transaction that ran it minus the start of the tick. Returns the run and, with ``profile``,
    the cProfile of the tick (cumulative, top 40; profiling inflates every time of that run)."""
    migrate.upgrade(db_url)
    clock = FakeClock(NIGHT)
    runtime = HubRuntime(
        Settings(database=DatabaseSettings(url=db_url), security=SECURITY),
        clock=clock,
        timer=ManualTimer(),
        escalation_timer=ManualTimer(),
        provider=_NoProvider(),
        background_sender=False,
    )
    factory = runtime.session_factory
    try:
        now = clock.now()
        seed_s = _escalating(runtime, alarms, now)
        runtime.settle_heap()  # as a started hub has done (HubRuntime.start)
        due = _count(
            factory,
            select(func.count())
            .select_from(AlarmEscalation)
            .where(AlarmEscalation.state == ACTIVE, AlarmEscalation.next_due_at <= now),
        )
        if due != alarms:
            raise RuntimeError(f"{due} escalations due, expected {alarms}")
        commits: list[tuple[float, int]] = []

        def after_commit(session: Session) -> None:
            commits.append((CLOCK.monotonic(), len(session.info.pop(STEPS_KEY, ()))))

        event.listen(factory, "after_commit", after_commit)
        yardstick, flush = python_loop_ms(), fsync_ms()
        profiler = cProfile.Profile() if profile else None
        t0 = CLOCK.monotonic()
        if profiler is not None:
            profiler.enable()
        with _steps_seen():
            steps = runtime.escalation.tick()
        if profiler is not None:
            profiler.disable()
        tick_s = CLOCK.monotonic() - t0
        event.remove(factory, "after_commit", after_commit)
        queued = _count(factory, select(func.count()).select_from(Notification))
    finally:
        runtime.engine.dispose()
        gc.unfreeze()
    lags = [(at - t0) * 1000 for at, n in commits for _ in range(n)]
    if len(lags) != steps:
        raise RuntimeError(f"{len(lags)} steps seen committed, the tick reports {steps}")
    text = ""
    if profiler is not None:
        buf = io.StringIO()
        pstats.Stats(profiler, stream=buf).sort_stats("cumulative").print_stats(40)
        text = buf.getvalue()
    run = StepRun(
        target=label,
        alarms=alarms,
        seed_s=seed_s,
        steps=steps,
        queued=queued,
        tick_s=tick_s,
        steps_per_s=steps / tick_s if tick_s > 0 else 0.0,
        p50_lag_ms=percentile(lags, 0.50),
        p99_lag_ms=percentile(lags, 0.99),
        max_lag_ms=max(lags, default=float("nan")),
        commits=len(commits),
        python_loop_ms=yardstick,
        fsync_ms=flush,
    )
    return run, text


def measure_spread_steps(db_url: str, label: str, alarms: int, spread_s: float) -> StepRun:
    """``alarms`` alarms escalating at the same time, their next steps due spread evenly over
    ``spread_s`` seconds (as when many alarms opened within a few minutes): the real engine on
    the system clock with its APScheduler timer; a step's lag is the commit that ran it minus
    the moment it was due."""
    migrate.upgrade(db_url)
    runtime = HubRuntime(
        Settings(database=DatabaseSettings(url=db_url), security=SECURITY),
        timer=ManualTimer(),
        provider=_NoProvider(),
        background_sender=False,
    )
    factory = runtime.session_factory
    try:
        now = CLOCK.now()
        seed_s = _escalating(runtime, alarms, now)
        start = CLOCK.now() + timedelta(seconds=2)
        due: dict[int, datetime] = {}
        with factory() as s, s.begin():
            ids = s.scalars(select(AlarmEscalation.alarm_id).order_by(AlarmEscalation.alarm_id))
            for k, alarm_id in enumerate(ids.all()):
                due[alarm_id] = start + timedelta(seconds=spread_s * k / alarms)
            s.execute(
                update(AlarmEscalation),
                [{"alarm_id": a, "next_due_at": d} for a, d in due.items()],
            )
        fired: list[float] = []
        seen: set[int] = set()
        commits = 0

        def after_commit(session: Session) -> None:
            nonlocal commits
            at = CLOCK.now()
            # the escalations this transaction advanced past their first step
            ran = [a for a in session.info.pop(STEPS_KEY, ()) if a not in seen]
            seen.update(ran)
            commits += bool(ran)
            fired.extend((at - due[a]).total_seconds() * 1000 for a in ran)

        event.listen(factory, "after_commit", after_commit)
        runtime.settle_heap()  # as a started hub has done (HubRuntime.start)
        yardstick, flush = python_loop_ms(), fsync_ms()
        with _steps_seen():
            runtime.escalation.start()
            deadline = CLOCK.monotonic() + spread_s + 120
            pause = threading.Event()
            while len(fired) < alarms and CLOCK.monotonic() < deadline:
                pause.wait(0.2)
        runtime.escalation.stop()
        event.remove(factory, "after_commit", after_commit)
        queued = _count(factory, select(func.count()).select_from(Notification))
    finally:
        runtime.engine.dispose()
        gc.unfreeze()
    if len(fired) != alarms:
        raise RuntimeError(f"{len(fired)} of {alarms} spread steps ran")
    return StepRun(
        target=f"{label}, due over {spread_s:.0f} s",
        alarms=alarms,
        seed_s=seed_s,
        steps=len(fired),
        queued=queued,
        tick_s=spread_s,
        steps_per_s=alarms / spread_s,
        p50_lag_ms=percentile(fired, 0.50),
        p99_lag_ms=percentile(fired, 0.99),
        max_lag_ms=max(fired, default=float("nan")),
        commits=commits,
        python_loop_ms=yardstick,
        fsync_ms=flush,
    )


STEPS_KEY = "bench_steps"


@contextmanager
def _steps_seen() -> Iterator[None]:
    """While inside: each transaction of the engine lists the alarms whose step it ran in
    ``session.info[STEPS_KEY]`` (the engine writes steps with ``_save_steps``; this wraps it,
    so the benchmark sees which steps a commit carried without reading the database)."""
    original = engine_module._save_steps

    def recording(session: Session, steps: Sequence[Any], now: datetime) -> None:
        session.info.setdefault(STEPS_KEY, []).extend(step.id for step in steps)
        original(session, steps, now)

    engine_module._save_steps = recording
    try:
        yield
    finally:
        engine_module._save_steps = original


def _count(session_factory: sessionmaker[Session], query: Any) -> int:
    with session_factory() as s:
        return int(s.scalar(query) or 0)


# -- the whole escalation benchmark -----------------------------------------------------------
def run_escalation_bench(
    *,
    homes: int,
    rate: float,
    seconds: float,
    falls: int,
    alarms: int,
    pg_admin_url: str | None,
    profile: bool = False,
    spread_s: float = SPREAD_S,
    sms_runs: int = 1,
    log: Callable[[str], None] = print,
) -> tuple[list[SmsRun], list[StepRun], dict[str, str]]:
    """Fall → first SMS under load (``sms_runs`` times per database, each on a fresh one: its
    tail varies from run to run), ``alarms`` steps due at once, and ``alarms`` steps due spread
    over ``spread_s``; SQLite and PostgreSQL."""
    falls = min(falls, homes)
    sms: list[SmsRun] = []
    steps: list[StepRun] = []
    profiles: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="carehub-bench-escalation-") as tmp:
        work = Path(tmp)
        runs = iter(range(1_000))
        targets: list[tuple[str, Callable[[], AbstractContextManager[str]]]] = [
            ("sqlite", lambda: _sqlite_database(work / f"esc-{next(runs)}.db"))
        ]
        if pg_admin_url:
            from bench.pg import temporary_database

            targets.append(("postgresql", lambda: temporary_database(pg_admin_url)))
        with MosquittoProcess(work / "broker") as broker:
            for label, database in targets:
                for run in range(1, sms_runs + 1):
                    log(
                        f"fall → first SMS on {label} (run {run} of {sms_runs}): {homes} homes, "
                        f"{rate:.0f}/s, {falls} falls"
                    )
                    with database() as url:
                        sms.append(
                            measure_fall_sms(
                                broker,
                                url,
                                label,
                                homes=homes,
                                rate=rate,
                                seconds=seconds,
                                falls=falls,
                                work=work,
                            )
                        )
        for label, database in targets:
            log(f"{alarms} escalation steps due at once on {label}")
            with database() as url:
                step_run, text = measure_steps(url, label, alarms, profile)
            steps.append(step_run)
            if text:
                profiles[label] = text
            log(f"{alarms} escalations with their next step due over {spread_s:.0f} s on {label}")
            with database() as url:
                steps.append(measure_spread_steps(url, label, alarms, spread_s))
    return sms, steps, profiles


def as_json(sms: list[SmsRun], steps: list[StepRun]) -> dict[str, Any]:
    """The runs as JSON-ready dicts."""
    return {"fall_sms": [asdict(r) for r in sms], "steps": [asdict(r) for r in steps]}
