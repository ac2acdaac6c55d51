"""Replays a scenario through the real hub and checks the alarms it raised against the file.

The hub is the real one (``HubRuntime``: ingest over MQTT, rules, alarm lifecycle, escalation
bookkeeping) on a real Mosquitto and a real database, with a fake clock that jumps from one
message (or rule due time) to the next, so a week takes seconds. After each group of messages
the runner waits until the hub has **committed** them: it publishes a fence message from a
resident-less probe device after them and waits for the ingest commit that stores it (the hub
processes one ordered stream), so no time passes while a message is still on its way.
"""

from __future__ import annotations

import logging
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy import create_engine, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from devices.catalogue import info
from hub.broker import MosquittoProcess
from hub.clock import FakeClock, SystemClock
from hub.config import DatabaseSettings, IngestSettings, MqttSettings, Settings
from hub.ingest.pipeline import BatchOutcome
from hub.rules.timers import ManualTimer
from hub.runtime import HubRuntime
from hub.storage.db import normalise_url
from hub.storage.migrate import upgrade
from hub.storage.models import Alarm, Device, DeviceType, Home, Resident, Room, Zone
from simulators import payloads
from simulators.devices import DevicePublisher, VirtualDevice
from simulators.life.model import (
    HOME_DEVICES,
    AbsenceRegistered,
    BrokerRestart,
    Control,
    Delivery,
    Publish,
    format_duration,
)
from simulators.life.scenario import Expectation, Scenario

logger = logging.getLogger(__name__)

# A home with no resident and one device: its messages are the runner's fences.
FENCE_HOME = "_scenario-fence"
FENCE_DEVICE = "_scenario-fence"
_FENCE_KEY = "scenario_fence_seq"
SYNC_TIMEOUT_S = 60.0
RECONNECT_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class SeenAlarm:
    """An alarm the hub raised, as the runner reports it."""

    type: str
    severity: str
    status: str
    resident: str
    device: str | None  # the device key in the home (``m-bath``), if the alarm is about one
    opened_at: datetime

    def describe(self) -> str:
        what = f"{self.type} {self.severity} for {self.resident}"
        if self.device:
            what += f" ({self.device})"
        return f"{what}, {self.status}"


@dataclass(frozen=True, slots=True)
class Found:
    expectation: Expectation
    alarm: SeenAlarm
    delay: timedelta  # from the incident (or fault) to the alarm


@dataclass(slots=True)
class ScenarioResult:
    """What one replay showed."""

    name: str
    description: str
    start: datetime
    tz: Any
    found: list[Found] = field(default_factory=list)
    missed: list[Expectation] = field(default_factory=list)
    unexpected: list[SeenAlarm] = field(default_factory=list)
    anchors: dict[str, datetime] = field(default_factory=dict)
    messages: int = 0
    days: float = 0.0
    wall_s: float = 0.0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and not self.missed and not self.unexpected


# --- matching (pure) ----------------------------------------------------------------------------


def match_alarms(scenario: Scenario, alarms: Sequence[SeenAlarm]) -> ScenarioResult:
    """Pair each expectation with the earliest fitting alarm; the rest are missed / unexpected."""
    result = ScenarioResult(scenario.name, scenario.description, scenario.start, scenario.tz)
    result.anchors = {i.id: i.at for i in [*scenario.incidents, *scenario.faults]}
    left = sorted(alarms, key=lambda a: a.opened_at)
    for expected in scenario.expect:
        anchor = scenario.anchor(expected.after)
        fits = [a for a in left if _fits(expected, anchor, a)]
        if not fits:
            result.missed.append(expected)
            continue
        alarm = fits[0]
        left.remove(alarm)
        result.found.append(Found(expected, alarm, alarm.opened_at - anchor))
    result.unexpected = left
    return result


def _fits(expected: Expectation, anchor: datetime, alarm: SeenAlarm) -> bool:
    return (
        alarm.type == expected.type.value
        and alarm.resident == expected.resident
        and alarm.severity == expected.severity.value
        and (expected.device is None or alarm.device == expected.device)
        and (expected.status is None or alarm.status == expected.status.value)
        and anchor + expected.not_before <= alarm.opened_at <= anchor + expected.within
    )


# --- the replay ---------------------------------------------------------------------------------


class _CommitWatch:
    """An ingest sink that tells the runner which fence the hub has committed."""

    def __init__(self) -> None:
        self._seen = threading.Condition()
        self.fence = 0

    def handle(self, session: Session, outcome: BatchOutcome) -> None:
        seqs = [e.seq for e in outcome.stored if e.device_id == FENCE_DEVICE and e.seq]
        if seqs:
            session.info[_FENCE_KEY] = max(seqs)

    def after_commit(self, info: dict[str, Any]) -> None:
        seq = info.get(_FENCE_KEY)
        if seq:
            with self._seen:
                self.fence = max(self.fence, int(seq))
                self._seen.notify_all()

    def wait(self, seq: int, timeout: float) -> bool:
        with self._seen:
            return self._seen.wait_for(lambda: self.fence >= seq, timeout)


class _DiscardingProvider:
    """Escalation is not what scenarios test: SMS and calls it would send go nowhere."""

    def __init__(self) -> None:
        self.count = 0

    def send_sms(self, *, to: str, body: str, status_callback: str) -> str:
        self.count += 1
        return f"SMscenario{self.count:024d}"

    def start_call(self, *, to: str, twiml_url: str, status_callback: str) -> str:
        self.count += 1
        return f"CAscenario{self.count:024d}"


class ScenarioReplay:
    """One scenario on one broker and one (migrated, empty) database."""

    def __init__(self, scenario: Scenario, broker: MosquittoProcess, db_url: str) -> None:
        self.scenario = scenario
        self.broker = broker
        self.clock = FakeClock(scenario.start)
        self.settings = Settings(
            mqtt=MqttSettings(
                host=broker.host,
                port=broker.port,
                client_id=f"carehub-scenario-{uuid.uuid4().hex[:8]}",
            ),
            database=DatabaseSettings(url=db_url),
            ingest=IngestSettings(batch_max_wait_ms=1),
        )
        self.watch = _CommitWatch()
        self.timer = ManualTimer()
        self.runtime = HubRuntime(
            self.settings,
            clock=self.clock,
            sinks=[self.watch],
            timer=self.timer,
            escalation_timer=ManualTimer(),
            provider=_DiscardingProvider(),
            background_sender=False,
            retention=False,
        )
        self.residents: dict[int, str] = {}
        self._fence_seq = 0
        self.publisher = DevicePublisher(
            VirtualDevice(FENCE_DEVICE, FENCE_HOME, DeviceType.MOTION_SENSOR, clock=self.clock),
            host=broker.host,
            port=broker.port,
            will=False,
            announce_online=False,
            timeout_s=RECONNECT_TIMEOUT_S,
        )

    def run(self) -> ScenarioResult:
        real = SystemClock()
        began = real.monotonic()
        simulation = self.scenario.simulation()
        self._seed()
        self.runtime.start()
        try:
            if not self.runtime.ingest.wait_connected(RECONNECT_TIMEOUT_S):
                raise RuntimeError("the hub did not connect to the broker")
            self.publisher.connect()
            self._replay(list(simulation.deliveries))
            alarms = self._alarms()
        finally:
            self.publisher.close()
            self.runtime.stop()
        result = match_alarms(self.scenario, alarms)
        result.messages = len(simulation.publishes)
        result.days = self.scenario.duration / timedelta(days=1)
        result.wall_s = real.monotonic() - began
        return result

    # -- set-up -----------------------------------------------------------------------------------
    def _seed(self) -> None:
        now = self.clock.now()
        with self.runtime.session_factory() as s, s.begin():
            zone = Zone(name="Scenario", created_at=now)
            s.add(zone)
            s.flush()
            fence_home = Home(id=FENCE_HOME, zone_id=zone.id, address="-", created_at=now)
            s.add(fence_home)
            s.add(
                Device(
                    id=FENCE_DEVICE,
                    home=fence_home,
                    type=DeviceType.MOTION_SENSOR,
                    protocol="native",
                    supervision_interval_s=info(
                        DeviceType.MOTION_SENSOR
                    ).default_supervision_interval_s,
                    created_at=now,
                )
            )
            residents: list[tuple[str, Resident]] = []
            for entry in self.scenario.residents:
                spec = entry.spec
                home = Home(id=spec.home_id, zone_id=zone.id, address=entry.id, created_at=now)
                s.add(home)
                rooms = {
                    room: Room(home=home, name=room.value, kind=room.kind)
                    for room in {d.room for d in HOME_DEVICES}
                }
                s.add_all(rooms.values())
                resident = Resident(
                    home=home,
                    zone_id=zone.id,
                    label=entry.id,
                    full_name=entry.id,
                    rule_config=dict(entry.rules) or None,
                    created_at=now,
                )
                s.add(resident)
                residents.append((entry.id, resident))
                for d in HOME_DEVICES:
                    ident = spec.device_id(d.key)
                    s.add(
                        Device(
                            id=ident,
                            home=home,
                            room=rooms[d.room],
                            type=d.type,
                            protocol=spec.protocol,
                            z2m_friendly_name=ident if spec.protocol != "native" else None,
                            supervision_interval_s=info(d.type).default_supervision_interval_s,
                            created_at=now,
                        )
                    )
            s.flush()
            self.residents = {r.id: key for key, r in residents}

    # -- replay -----------------------------------------------------------------------------------
    def _replay(self, deliveries: list[Delivery]) -> None:
        rules = self.runtime.rules
        assert rules is not None
        end = self.scenario.end
        i = 0
        while True:
            rules.run_due()
            now = self.clock.now()
            if i < len(deliveries) and deliveries[i].at <= now:
                group: list[Delivery] = []
                while i < len(deliveries) and deliveries[i].at <= now:
                    group.append(deliveries[i])
                    i += 1
                self._deliver(group)
                continue
            if now >= end:
                return
            stops = [end]
            if i < len(deliveries):
                stops.append(deliveries[i].at)
            requested = self.timer.requested
            if requested is not None and requested > now:
                stops.append(requested)
            self.clock.set(min(stops))

    def _deliver(self, group: list[Delivery]) -> None:
        for delivery in group:
            if isinstance(delivery, Publish):
                self.publisher.publish(delivery.message)
                continue
            assert isinstance(delivery, Control)
            self._sync()
            action = delivery.action
            if isinstance(action, BrokerRestart):
                self._restart_broker()
            elif isinstance(action, AbsenceRegistered):
                self._register_absence(action)
        self._sync()

    def _sync(self) -> None:
        """Return once the hub has committed everything published so far."""
        self._fence_seq += 1
        fence = payloads.native_motion(
            FENCE_HOME, FENCE_DEVICE, motion=False, ts=self.clock.now(), seq=self._fence_seq
        )
        self.publisher.publish(fence)
        if not self.watch.wait(self._fence_seq, SYNC_TIMEOUT_S):
            raise RuntimeError(
                f"the hub did not commit the messages of {self.clock.now().isoformat()}"
                f" within {SYNC_TIMEOUT_S:g} s"
            )

    def _restart_broker(self) -> None:
        self.broker.restart()
        waited = threading.Event()
        real = SystemClock()
        deadline = real.monotonic() + RECONNECT_TIMEOUT_S
        while not (self.publisher.connected and self.runtime.ingest.status() == "connected"):
            if real.monotonic() > deadline:
                raise RuntimeError("hub or homes did not reconnect after the broker restart")
            waited.wait(0.05)

    def _register_absence(self, action: AbsenceRegistered) -> None:
        resident_id = next(rid for rid, key in self.residents.items() if key == action.resident)
        with self.runtime.session_factory() as s, s.begin():
            s.execute(
                update(Resident)
                .where(Resident.id == resident_id)
                .values(absence_until=action.until)
            )

    def _alarms(self) -> list[SeenAlarm]:
        with self.runtime.session_factory() as s:
            rows = s.scalars(select(Alarm).order_by(Alarm.id)).all()
            seen: list[SeenAlarm] = []
            for a in rows:
                key = self.residents.get(a.resident_id, f"resident {a.resident_id}")
                device = a.device_id
                if device is not None and device.startswith(f"{key}-"):
                    device = device[len(key) + 1 :]
                seen.append(
                    SeenAlarm(a.type, a.severity.value, a.status.value, key, device, a.opened_at)
                )
            return seen


def run_scenario(scenario: Scenario, *, broker: MosquittoProcess, db_url: str) -> ScenarioResult:
    """Replay ``scenario`` on ``broker`` with the migrated, empty database at ``db_url``."""
    return ScenarioReplay(scenario, broker, db_url).run()


# --- databases and brokers for the command ----------------------------------------------------


DatabaseMaker = Callable[[str], AbstractContextManager[str]]


@contextmanager
def sqlite_databases(workdir: Path) -> Iterator[DatabaseMaker]:
    """Fresh SQLite databases: one migrated template, copied for each scenario."""
    template = workdir / "template.db"
    upgrade(f"sqlite:///{template}")

    @contextmanager
    def make(name: str) -> Iterator[str]:
        path = workdir / f"{name}-{uuid.uuid4().hex[:6]}.db"
        shutil.copyfile(template, path)
        try:
            yield f"sqlite:///{path}"
        finally:
            path.unlink(missing_ok=True)

    yield make


@contextmanager
def postgres_databases(server_url: str) -> Iterator[DatabaseMaker]:
    """Fresh PostgreSQL databases on the server of ``server_url`` (which may create them)."""
    url = normalise_url(server_url)
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    created: list[str] = []

    def create(template: str | None = None) -> str:
        name = f"carehub_scenario_{uuid.uuid4().hex[:10]}"
        statement = f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")
        with admin.connect() as connection:
            connection.execute(text(statement))
        created.append(name)
        return name

    def url_of(name: str) -> str:
        return make_url(url).set(database=name).render_as_string(hide_password=False)

    template = create()
    upgrade(url_of(template))

    @contextmanager
    def make(_name: str) -> Iterator[str]:
        yield url_of(create(template))

    try:
        yield make
    finally:
        with admin.connect() as connection:
            for name in created:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def own_broker(workdir: Path) -> Iterator[MosquittoProcess]:
    """A Mosquitto of our own on a free port, with the project's configuration."""
    broker = MosquittoProcess(workdir / f"mosquitto-{uuid.uuid4().hex[:6]}")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


# --- reporting ----------------------------------------------------------------------------------


def _local(at: datetime, tz: Any) -> str:
    return at.astimezone(tz).strftime("%a %d %H:%M:%S")


def scenario_table(result: ScenarioResult) -> Table:
    """One row per expected alarm (found or missed) and per unexpected alarm."""
    verdict = "[green]PASS[/]" if result.ok else "[bold red]FAIL[/]"
    table = Table(
        "alarm",
        "after",
        "window",
        "raised (local)",
        "incident → alarm",
        "result",
        title=f"{verdict} {result.name}: {result.description}",
        title_justify="left",
    )
    for f in result.found:
        e = f.expectation
        table.add_row(
            e.describe(),
            e.after,
            f"{format_duration(e.not_before)}–{format_duration(e.within)}",
            _local(f.alarm.opened_at, result.tz),
            format_duration(f.delay),
            "[green]found[/]",
        )
    for e in result.missed:
        table.add_row(
            e.describe(),
            e.after,
            f"{format_duration(e.not_before)}–{format_duration(e.within)}",
            "—",
            "—",
            "[bold red]MISSED[/]",
        )
    for a in result.unexpected:
        table.add_row(
            a.describe(), "—", "—", _local(a.opened_at, result.tz), "—", "[bold red]UNEXPECTED[/]"
        )
    if result.error:
        table.add_row("[bold red]error[/]", "", "", "", "", result.error)
    if not (result.found or result.missed or result.unexpected or result.error):
        table.add_row("(no alarm expected, none raised)", "", "", "", "", "[green]quiet[/]")
    return table


def totals(results: Sequence[ScenarioResult]) -> dict[str, Any]:
    delays = [f.delay for r in results for f in r.found]
    return {
        "scenarios": len(results),
        "passed": sum(1 for r in results if r.ok),
        "failed": sum(1 for r in results if not r.ok),
        "expected": sum(len(r.found) + len(r.missed) for r in results),
        "found": sum(len(r.found) for r in results),
        "missed": sum(len(r.missed) for r in results),
        "unexpected": sum(len(r.unexpected) for r in results),
        "messages": sum(r.messages for r in results),
        "days": sum(r.days for r in results),
        "wall_s": sum(r.wall_s for r in results),
        "max_delay": max(delays) if delays else None,
    }


def totals_table(results: Sequence[ScenarioResult]) -> Table:
    table = Table(
        "scenario",
        "days",
        "messages",
        "expected",
        "found",
        "missed",
        "unexpected",
        "max incident → alarm",
        "wall s",
        "result",
        title="scenarios",
        title_justify="left",
    )
    for r in results:
        delays = [f.delay for f in r.found]
        table.add_row(
            r.name,
            f"{r.days:.2f}",
            str(r.messages),
            str(len(r.found) + len(r.missed)),
            str(len(r.found)),
            str(len(r.missed)),
            str(len(r.unexpected)),
            format_duration(max(delays)) if delays else "—",
            f"{r.wall_s:.1f}",
            "[green]PASS[/]" if r.ok else "[bold red]FAIL[/]",
        )
    return table


def total_line(results: Sequence[ScenarioResult]) -> str:
    t = totals(results)
    max_delay = format_duration(t["max_delay"]) if t["max_delay"] is not None else "—"
    return (
        f"TOTAL {t['scenarios']} scenarios: {t['passed']} passed, {t['failed']} failed;"
        f" alarms expected {t['expected']}, found {t['found']}, missed {t['missed']},"
        f" unexpected {t['unexpected']}; max incident→alarm {max_delay};"
        f" {t['days']:.1f} simulated days, {t['messages']} messages in {t['wall_s']:.0f} s"
    )


def print_results(console: Console, results: Sequence[ScenarioResult]) -> None:
    console.print(totals_table(results))
    console.print(total_line(results), markup=False, highlight=False, soft_wrap=True)
