"""Rules benchmarks: fall → alarm committed under background load, and 10,000 armed residents."""

from __future__ import annotations

import gc
import json
import tempfile
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import event, func, insert, select
from sqlalchemy.orm import Session, sessionmaker

from bench.ingest import percentile, publish, wait_for
from bench.publisher import HOME_DEVICES, LOAD_DEVICES, rules_home
from devices.catalogue import info
from hub.broker import MosquittoProcess
from hub.clock import FakeClock, SystemClock
from hub.config import DatabaseSettings, MqttSettings, Settings
from hub.escalation.policy import ensure_default_policies
from hub.ingest.pipeline import BatchOutcome, IngestProcessor
from hub.ingest.store import StoredEvent
from hub.rules import engine
from hub.rules.config import rule_config
from hub.rules.model import DeviceInfo, HomeContext, Observation
from hub.rules.timers import ManualTimer
from hub.runtime import HubRuntime
from hub.storage import migrate
from hub.storage.models import (
    Alarm,
    Device,
    DeviceType,
    Home,
    Protocol,
    Resident,
    Room,
    RuleState,
    Zone,
)

CLOCK = SystemClock()
OSLO = ZoneInfo("Europe/Oslo")
ROOM_KINDS = ("entrance", "bathroom", "living", "bedroom")
SEED_CHUNK = 1000
ARM_BATCH = 250  # residents per transaction when arming (an ingest batch holds up to 500)
# 23:00 in Oslo: a door opened now arms the 10-minute door-at-night grace timer
NIGHT = datetime(2026, 1, 5, 23, 0, tzinfo=OSLO)
T = TypeVar("T")


@dataclass
class LatencyRun:
    """Fall → alarm committed while a background load runs through the real broker and hub."""

    target: str  # "hub sqlite", "hub postgresql"
    homes: int
    load_rate: float  # offered background events/s
    load_events: int
    load_committed: int
    load_p50_ms: float
    load_p99_ms: float
    load_throughput: float  # background events committed per second
    falls: int
    fall_alarms: int  # fall alarms in the database afterwards (must equal falls)
    p50_ms: float
    p99_ms: float
    max_ms: float


@dataclass
class ScaleRun:
    """Arming and firing the timers of many residents, through ``RulesService``."""

    target: str  # "pure engine", "rules sqlite", "rules postgresql"
    residents: int
    arm_s: float
    arm_ms_per_resident: float
    armed: int  # residents with a due time afterwards
    fire_s: float
    fire_ms_per_resident: float
    fired: int  # residents evaluated by run_due
    alarms: int  # door-at-night alarms opened
    rss_growth_kib_per_1000: float  # VmRSS after arming and firing minus before, per 1,000
    peak_rss_mib: float  # VmHWM of the process at the end of the run
    heap_peak_kib_per_1000: float  # tracemalloc peak (pure engine: all states held in memory)
    state_bytes_per_resident: float  # JSON size of the stored rule state


# -- seeding ------------------------------------------------------------------------------------
def seed_homes(session_factory: sessionmaker[Session], homes: int, now: datetime) -> None:
    """``homes`` homes, each with one resident, four rooms and the devices of ``HOME_DEVICES``."""
    with session_factory() as s, s.begin():
        s.execute(insert(Zone), [{"id": 1, "name": "Bench", "created_at": now}])
        for start in range(0, homes, SEED_CHUNK):
            chunk = range(start, min(homes, start + SEED_CHUNK))
            s.execute(
                insert(Home),
                [{"id": rules_home(h), "zone_id": 1, "created_at": now} for h in chunk],
            )
            s.execute(
                insert(Room),
                [
                    {"id": _room_id(h, kind), "home_id": rules_home(h), "name": kind, "kind": kind}
                    for h in chunk
                    for kind in ROOM_KINDS
                ],
            )
            s.execute(
                insert(Resident),
                [
                    {
                        "id": h + 1,
                        "home_id": rules_home(h),
                        "zone_id": 1,
                        "label": f"Resident {h}",
                        "full_name": f"Resident {h}",
                        "created_at": now,
                    }
                    for h in chunk
                ],
            )
            s.execute(
                insert(Device),
                [
                    {
                        "id": f"{rules_home(h)}-{suffix}",
                        "home_id": rules_home(h),
                        "room_id": _room_id(h, kind),
                        "type": DeviceType(device_type),
                        "protocol": Protocol.NATIVE,
                        "supervision_interval_s": info(device_type).default_supervision_interval_s,
                        "created_at": now,
                    }
                    for h in chunk
                    for suffix, (device_type, kind) in HOME_DEVICES.items()
                ],
            )


def _room_id(home: int, kind: str) -> int:
    return home * len(ROOM_KINDS) + ROOM_KINDS.index(kind) + 1


def _count(session_factory: sessionmaker[Session], query: Any) -> int:
    with session_factory() as s:
        return int(s.scalar(query) or 0)


def _fall_alarms(session_factory: sessionmaker[Session]) -> int:
    return _count(
        session_factory, select(func.count()).select_from(Alarm).where(Alarm.type == "fall")
    )


# -- fall → alarm committed under load ----------------------------------------------------------
class _CommitStamp:
    """An ingest sink that stamps the moment each event's batch committed.

    The rules write the alarm in the transaction that stores the fall event, so the commit of
    the fall's batch is the commit of its alarm (the run checks that every fall opened one).
    The stamp is taken by the session's own ``after_commit`` event, in the ingest thread right
    after COMMIT returns: before any sink's ``after_commit`` (the runtime runs the rules' first,
    and they wake the sender), so an SMS can never seem to come before its alarm.
    """

    def __init__(self) -> None:
        self.done: dict[str, float] = {}
        self.falls: dict[str, float] = {}

    def handle(self, session: Session, outcome: BatchOutcome) -> None:
        keys = [(f"{e.device_id}/{e.seq}", e.kind) for e in outcome.stored if e.kind != "status"]

        def committed(_session: Session) -> None:
            now = CLOCK.monotonic()
            for key, kind in keys:
                (self.falls if kind == "fall" else self.done)[key] = now

        event.listen(session, "after_commit", committed, once=True)

    def after_commit(self, info: dict[str, Any]) -> None:
        """Nothing: the stamp is taken at the commit itself (``handle``)."""


def measure_fall_latency(
    broker: MosquittoProcess,
    db_url: str,
    label: str,
    *,
    homes: int,
    rate: float,
    seconds: float,
    falls: int,
    work: Path,
) -> LatencyRun:
    """The real hub (ingest + rules) on the system clock, background load plus spread falls."""
    migrate.upgrade(db_url)
    settings = Settings(
        mqtt=MqttSettings(host=broker.host, port=broker.port, client_id=f"bench-rules-{label}"),
        database=DatabaseSettings(url=db_url),
    )
    # the hub as it runs, minus the SMS sender: no gateway here (issue 4 measures sending)
    runtime = HubRuntime(settings, background_sender=False)
    assert runtime.rules is not None
    seed_homes(runtime.session_factory, homes, CLOCK.now())
    stamp = _CommitStamp()
    processor = IngestProcessor(settings, runtime.session_factory, [stamp, runtime.rules])
    runtime.processor = processor
    runtime.ingest._processor = processor
    runtime.start()
    runtime.ingest.wait_connected(10)
    try:
        # warm-up: every load device once, so each resident's rule state exists before timing
        warm = len(LOAD_DEVICES) * homes
        publish(broker.port, warm, rate, 0, homes, work / f"warm-{label}.json", "--fleet", "rules")
        wait_for(stamp.done, warm, 60)
        stamp.done.clear()
        count = int(rate * seconds)
        out = work / f"rules-{label}.json"
        publish(broker.port, count, rate, 0, homes, out, "--fleet", "rules", "--falls", str(falls))
        wait_for(stamp.falls, falls, 60)
        wait_for(stamp.done, count, 60)
        alarms = _fall_alarms(runtime.session_factory)
    finally:
        runtime.stop()
    sent: dict[str, float] = json.loads(out.read_text())
    fall_sent = {k: t for k, t in sent.items() if k.split("/")[0].endswith("-fall")}
    load_sent = {k: t for k, t in sent.items() if k not in fall_sent}
    fall_ms = [(stamp.falls[k] - t) * 1000 for k, t in fall_sent.items() if k in stamp.falls]
    load_ms = [(stamp.done[k] - t) * 1000 for k, t in load_sent.items() if k in stamp.done]
    first = min(load_sent.values())
    last = max(stamp.done.values(), default=first)
    return LatencyRun(
        target=f"hub {label}",
        homes=homes,
        load_rate=rate,
        load_events=len(load_sent),
        load_committed=len(load_ms),
        load_p50_ms=percentile(load_ms, 0.50),
        load_p99_ms=percentile(load_ms, 0.99),
        load_throughput=len(load_ms) / (last - first) if last > first else 0.0,
        falls=len(fall_sent),
        fall_alarms=alarms,
        p50_ms=percentile(fall_ms, 0.50),
        p99_ms=percentile(fall_ms, 0.99),
        max_ms=max(fall_ms, default=float("nan")),
    )


# -- many residents with their timers armed -----------------------------------------------------
def _proc_status_kib(field: str) -> int:
    """A ``kB`` field of /proc/self/status (VmRSS, VmHWM); 0 where there is no /proc."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _door_open(h: int, at: datetime) -> StoredEvent:
    home = rules_home(h)
    return StoredEvent(
        id=h + 1,
        device_id=f"{home}-door",
        home_id=home,
        kind="door",
        event_ts=at,
        received_at=at,
        seq=1,
        data={"open": True},
    )


def measure_scale(db_url: str, label: str, residents: int) -> ScaleRun:
    """Arm every resident's timers through ``RulesService.handle``, then fire them with run_due.

    At 23:00 a door opened arms the door-at-night grace timer (10 min), the inactivity stopwatch
    and the supervision of six devices. The fake clock then jumps 11 minutes and ``run_due``
    opens a door-at-night alarm for every resident. Nothing waits: ``ManualTimer`` only records.
    """
    migrate.upgrade(db_url)
    clock = FakeClock(NIGHT)
    timer = ManualTimer()
    # the hub's rules as composed by HubRuntime (escalation starts for each alarm opened),
    # without MQTT and the SMS sender; nothing is started, the benchmark drives the rules
    runtime = HubRuntime(
        Settings(database=DatabaseSettings(url=db_url)),
        clock=clock,
        timer=timer,
        escalation_timer=ManualTimer(),
        background_sender=False,
    )
    session_factory = runtime.session_factory
    try:
        seed_homes(session_factory, residents, clock.now())
        with session_factory() as s, s.begin():
            ensure_default_policies(s, clock.now())
        rules = runtime.rules
        assert rules is not None
        rules.feedback = None  # no MQTT connection to publish on
        rules.start()
        gc.collect()
        rss_before = _proc_status_kib("VmRSS")
        now = clock.now()
        t0 = CLOCK.monotonic()
        for start in range(0, residents, ARM_BATCH):
            stored = [_door_open(h, now) for h in range(start, min(residents, start + ARM_BATCH))]
            with session_factory() as s, s.begin():
                rules.handle(s, BatchOutcome(stored, [], 0, 0, 0, 0))
                info_ = s.info
            rules.after_commit(info_)
        arm_s = CLOCK.monotonic() - t0
        armed = _count(
            session_factory,
            select(func.count()).select_from(RuleState).where(RuleState.next_due_at.is_not(None)),
        )
        with session_factory() as s:
            sizes = [len(json.dumps(st)) for st in s.scalars(select(RuleState.state))]
        if timer.requested != now + timedelta(minutes=10):
            raise RuntimeError(f"the timer was asked for {timer.requested}, not 23:10")
        clock.advance(timedelta(minutes=11))
        t0 = CLOCK.monotonic()
        fired = rules.run_due()
        fire_s = CLOCK.monotonic() - t0
        alarms = _count(
            session_factory,
            select(func.count()).select_from(Alarm).where(Alarm.type == "door_night"),
        )
        rules.stop()
        gc.collect()
        rss_after = _proc_status_kib("VmRSS")
    finally:
        runtime.engine.dispose()
    per_k = residents / 1000
    return ScaleRun(
        target=f"rules {label}",
        residents=residents,
        arm_s=arm_s,
        arm_ms_per_resident=arm_s * 1000 / residents,
        armed=armed,
        fire_s=fire_s,
        fire_ms_per_resident=fire_s * 1000 / residents,
        fired=fired,
        alarms=alarms,
        rss_growth_kib_per_1000=(rss_after - rss_before) / per_k,
        peak_rss_mib=_proc_status_kib("VmHWM") / 1024,
        heap_peak_kib_per_1000=float("nan"),
        state_bytes_per_resident=sum(sizes) / len(sizes) if sizes else 0.0,
    )


def _context(h: int) -> HomeContext:
    home = rules_home(h)
    devices = tuple(
        DeviceInfo(
            id=f"{home}-{suffix}",
            type=DeviceType(device_type),
            room_kind=kind,
            supervision_interval_s=info(device_type).default_supervision_interval_s,
            last_seen_at=None,
            online=None,
            battery=None,
            tamper=None,
            test_mode_until=None,
        )
        for suffix, (device_type, kind) in sorted(HOME_DEVICES.items())
    )
    return HomeContext(
        resident_id=h + 1,
        home_id=home,
        devices=devices,
        absence_until=None,
        config=rule_config(None),
        tz=OSLO,
    )


def measure_pure_engine(residents: int) -> ScaleRun:
    """The same door-at-night story on the pure engine alone: no database, states in a list."""
    contexts = [_context(h) for h in range(residents)]
    now = NIGHT.astimezone(UTC)
    later = now + timedelta(minutes=11)

    def arm() -> list[dict[str, Any]]:
        states = []
        for h, ctx in enumerate(contexts):
            obs = Observation(
                device_id=f"{ctx.home_id}-door", kind="door", at=now, data={"open": True}
            )
            result = engine.evaluate_observation(ctx, engine.initial_state(), obs, now)
            states.append(result.state)
            if result.next_due_at != now + timedelta(minutes=10):
                raise RuntimeError(f"resident {h}: no door timer armed")
        return states

    def fire(states: list[dict[str, Any]]) -> int:
        opened = 0
        for ctx, state in zip(contexts, states, strict=True):
            result = engine.evaluate_due(ctx, state, later)
            opened += sum(1 for d in result.decisions if getattr(d, "type", None) == "door_night")
        return opened

    arm_s, states = _timed(arm)
    fire_s, alarms = _timed(lambda: fire(states))
    sizes = [len(json.dumps(st)) for st in states]
    states.clear()
    gc.collect()
    tracemalloc.start()
    kept = arm()  # the heap the states of every resident need while they are all held
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del kept
    per_k = residents / 1000
    return ScaleRun(
        target="pure engine",
        residents=residents,
        arm_s=arm_s,
        arm_ms_per_resident=arm_s * 1000 / residents,
        armed=residents,
        fire_s=fire_s,
        fire_ms_per_resident=fire_s * 1000 / residents,
        fired=residents,
        alarms=alarms,
        rss_growth_kib_per_1000=float("nan"),
        peak_rss_mib=_proc_status_kib("VmHWM") / 1024,
        heap_peak_kib_per_1000=peak / 1024 / per_k,
        state_bytes_per_resident=sum(sizes) / len(sizes) if sizes else 0.0,
    )


def _timed(fn: Callable[[], T]) -> tuple[float, T]:
    t0 = CLOCK.monotonic()
    value = fn()
    return CLOCK.monotonic() - t0, value


# -- the whole rules benchmark ------------------------------------------------------------------
def run_rules_bench(
    *,
    homes: int,
    rate: float,
    seconds: float,
    falls: int,
    residents: int,
    pg_admin_url: str | None,
    log: Callable[[str], None] = print,
) -> tuple[list[LatencyRun], list[ScaleRun]]:
    """Fall latency under load and the timers of ``residents`` residents, SQLite and PostgreSQL."""
    latency: list[LatencyRun] = []
    scale: list[ScaleRun] = []
    with tempfile.TemporaryDirectory(prefix="carehub-bench-rules-") as tmp:
        work = Path(tmp)
        runs = iter(range(1_000))
        targets: list[tuple[str, Callable[[], AbstractContextManager[str]]]] = [
            ("sqlite", lambda: _sqlite_database(work / f"rules-{next(runs)}.db"))
        ]
        if pg_admin_url:
            from bench.pg import temporary_database

            targets.append(("postgresql", lambda: temporary_database(pg_admin_url)))
        with MosquittoProcess(work / "broker") as broker:
            for label, database in targets:
                log(f"fall → alarm on {label}: {homes} homes, {rate:.0f}/s, {falls} falls")
                with database() as url:
                    latency.append(
                        measure_fall_latency(
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
        log(f"pure engine: {residents} residents")
        scale.append(measure_pure_engine(residents))
        for label, database in targets:
            log(f"{residents} residents with timers armed on {label}")
            with database() as url:
                scale.append(measure_scale(url, label, residents))
    return latency, scale


@contextmanager
def _sqlite_database(path: Path) -> Iterator[str]:
    """A fresh SQLite file, removed afterwards (the counterpart of ``temporary_database``)."""
    try:
        yield f"sqlite:///{path}"
    finally:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


def as_json(latency: list[LatencyRun], scale: list[ScaleRun]) -> dict[str, Any]:
    """The runs as JSON-ready dicts."""
    return {"fall_latency": [asdict(r) for r in latency], "scale": [asdict(r) for r in scale]}
