"""Fleet benchmark: the real hub under a 1,000- and 10,000-home fleet (simulators.fleet), incident
→ alarm and → first SMS, RSS per 1,000 homes, and a ramp to the largest fleet it keeps up with."""

from __future__ import annotations

import argparse
import gc
import json
import logging
import re
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, time
from pathlib import Path
from typing import Any

from rich.table import Table
from sqlalchemy import insert, select
from sqlalchemy.orm import Session, sessionmaker

from bench.escalation import _portal_up, _wait
from bench.ingest import percentile
from bench.rules import _sqlite_database
from bench.simulator import SimulatorProcess
from devices.catalogue import info
from hub.alarms.lifecycle import ACTIVE_STATUSES, Outcome
from hub.alarms.service import transition
from hub.broker import MosquittoProcess, free_port
from hub.clock import SystemClock
from hub.config import DatabaseSettings, MqttSettings, PortalSettings, Settings
from hub.ingest.pipeline import BatchOutcome
from hub.runtime import HubRuntime
from hub.storage import migrate
from hub.storage.models import (
    Alarm,
    AlarmStatus,
    Device,
    Home,
    Protocol,
    Resident,
    Room,
    ShiftPattern,
    StaffRole,
    StaffUser,
    Zone,
)
from simulators.fleet import FleetHome, build_fleet

CLOCK = SystemClock()
SID = "AC" + "f" * 32
TOKEN = "bench-fleet-token"
NURSE_PHONE = "+4790000011"
SEED = 2026
# The fleet runs the morning peak's rates (the busiest hour of a day: 60 events/home/hour).
PEAK_START = "2026-01-05T07:30:00+01:00"
SEED_CHUNK = 2000
SIZES = (1_000, 10_000)  # the measured fleets
RAMP = (20_000, 40_000, 60_000, 80_000, 120_000, 160_000)  # until the hub falls behind
QUICK_SIZES, QUICK_RAMP = (200, 1_000), (2_000,)
# "Keeps up": after a step, the events not yet committed are at most this many seconds of the
# offered rate (or BACKLOG_FLOOR events), and incident → alarm committed p99 is within the limit.
BACKLOG_LIMIT_S = 2.0
BACKLOG_FLOOR = 100
ALARM_P99_LIMIT_MS = 2000.0
DRAIN_WAIT_S = 120.0
SMS_WAIT_S = 60.0
_FALL_SMS = re.compile(r": Fall - Resident (\d+)\. ")


@dataclass
class Step:
    """One fleet size: what was offered and stored, the incidents' latencies, the hub's RSS."""

    target: str
    homes: int
    seconds: float
    offered_per_s: float  # ordinary events (no status reports) per second, as planned
    statuses: int
    events_sent: int
    events_committed: int  # when the publisher finished
    backlog_end: int  # sent but not committed when the publisher finished
    backlog_mid: int  # the same, half-way through
    stored_per_s: float  # events committed per second over the step
    drain_s: float  # after the publisher finished, until every event was committed
    publisher_late_s: float  # how far behind its plan the publisher fell (its own limit)
    incidents: int
    alarms: int  # incidents whose fall was committed (the alarm with it)
    sms: int  # incidents whose first SMS reached the simulator
    alarm_p50_ms: float
    alarm_p99_ms: float
    alarm_max_ms: float
    sms_p50_ms: float
    sms_p99_ms: float
    sms_max_ms: float
    rss_mib: float  # VmRSS of the process running the hub after the step
    keeps_up: bool
    ramp: bool = False


@dataclass
class FleetResult:
    steps: list[Step] = field(default_factory=list)

    def largest(self, target: str) -> int | None:
        """The largest fleet that kept up on ``target`` (None: not even the smallest)."""
        ok = [s.homes for s in self.steps if s.target == target and s.keeps_up]
        return max(ok, default=None)

    def rss_kib_per_1000(self, target: str) -> float | None:
        """RSS growth per 1,000 homes between the smallest and largest measured steps."""
        steps = sorted((s for s in self.steps if s.target == target and not s.ramp), key=_homes)
        if len(steps) < 2 or steps[-1].homes == steps[0].homes:
            return None
        grow = (steps[-1].rss_mib - steps[0].rss_mib) * 1024
        return grow / ((steps[-1].homes - steps[0].homes) / 1000)


def _homes(step: Step) -> int:
    return step.homes


class _Stamps:
    """An ingest sink before the rules: commit times of ordinary events and of falls.

    The rules open the fall alarm in the transaction that stores the fall, so the commit of the
    fall's batch is when its alarm row is committed and visible.
    """

    def __init__(self) -> None:
        self.committed = 0
        self.series: list[tuple[float, int]] = []  # (monotonic, events committed so far)
        self.falls: dict[str, list[float]] = {}  # device → commits of its falls
        self._lock = threading.Lock()

    def handle(self, session: Session, outcome: BatchOutcome) -> None:
        events = [e for e in outcome.stored if e.kind != "status"]
        session.info["fleet_events"] = (
            len(events),
            [e.device_id for e in events if e.kind == "fall"],
        )

    def after_commit(self, info_: dict[str, Any]) -> None:
        now = CLOCK.monotonic()
        count, falls = info_.get("fleet_events", (0, []))
        with self._lock:
            self.committed += count
            self.series.append((now, self.committed))
            for device in falls:
                self.falls.setdefault(device, []).append(now)

    def fall_after(self, device: str, sent: float) -> float | None:
        """The commit of the device's first fall at or after ``sent`` (an earlier step's fall
        in the same home is not this incident's)."""
        with self._lock:
            return min((t for t in self.falls.get(device, ()) if t >= sent), default=None)

    def committed_at(self, at: float) -> int:
        with self._lock:
            done = 0
            for t, n in self.series:
                if t > at:
                    break
                done = n
            return done


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# -- seeding ------------------------------------------------------------------------------------
def seed_zone(factory: sessionmaker[Session], now: datetime) -> None:
    """Zone 1 and one nurse with a phone, on duty there around the clock, every day."""
    with factory() as s, s.begin():
        s.execute(insert(Zone), [{"id": 1, "name": "Fleet", "created_at": now}])
        nurse = StaffUser(
            username="fleet-nurse",
            display_name="Fleet Sykepleier",
            role=StaffRole.NURSE,
            password_hash="x",
            phone=NURSE_PHONE,
            zone_id=1,
            active=True,
            created_at=now,
        )
        s.add(nurse)
        s.flush()
        s.add_all(
            ShiftPattern(
                zone_id=1, user_id=nurse.id, name="all", weekday=d, start=time(0), end=time(0)
            )
            for d in range(7)
        )


def seed_fleet(factory: sessionmaker[Session], homes: Sequence[FleetHome], now: datetime) -> None:
    """The homes as the hub knows them: a resident ``Resident <index>`` each, rooms, devices
    (Zigbee2MQTT ones under their friendly name)."""
    for start in range(0, len(homes), SEED_CHUNK):
        chunk = homes[start : start + SEED_CHUNK]
        rooms = {(h.index, d.room) for h in chunk for d in h.devices}
        room_id = {key: n for n, key in enumerate(sorted(rooms), start=chunk[0].index * 8 + 1)}
        with factory() as s, s.begin():
            s.execute(
                insert(Home), [{"id": h.home_id, "zone_id": 1, "created_at": now} for h in chunk]
            )
            s.execute(
                insert(Room),
                [
                    {"id": rid, "home_id": chunk[h - chunk[0].index].home_id, "name": r, "kind": r}
                    for (h, r), rid in room_id.items()
                ],
            )
            s.execute(
                insert(Resident),
                [
                    {
                        "id": h.index + 1,
                        "home_id": h.home_id,
                        "zone_id": 1,
                        "label": f"Resident {h.index}",
                        "full_name": f"Resident {h.index}",
                        "created_at": now,
                    }
                    for h in chunk
                ],
            )
            s.execute(
                insert(Device),
                [
                    {
                        "id": d.device_id,
                        "home_id": h.home_id,
                        "room_id": room_id[(h.index, d.room)],
                        "type": d.type,
                        "protocol": d.protocol,
                        "z2m_friendly_name": (
                            d.device_id if d.protocol is Protocol.ZIGBEE2MQTT else None
                        ),
                        "supervision_interval_s": info(d.type).default_supervision_interval_s,
                        "created_at": now,
                    }
                    for h in chunk
                    for d in h.devices
                ],
            )


def _close_open_alarms(runtime: HubRuntime) -> int:
    """Between steps: close every alarm still active (outcome *test*), so that the next step's
    incidents open new alarms instead of joining old ones and old escalations stop."""
    with runtime.session_factory() as s, s.begin():
        ids = list(s.scalars(select(Alarm.id).where(Alarm.status.in_(ACTIVE_STATUSES))))
        for alarm_id in ids:
            alarm = s.get(Alarm, alarm_id)
            assert alarm is not None
            taken = AlarmStatus(alarm.status) not in (AlarmStatus.OPEN, AlarmStatus.NOTIFIED)
            outcome = Outcome.NO_ACTION_NEEDED if taken else Outcome.TEST
            transition(
                s,
                alarm_id,
                to=AlarmStatus.RESOLVED,
                actor="bench",
                now=CLOCK.now(),
                outcome=outcome.value,
            )
    for alarm_id in ids:
        runtime.alarm_changed(alarm_id)
    return len(ids)


# -- one step -----------------------------------------------------------------------------------
def _publish(
    port: int, homes: int, seconds: float, incidents: int, seq_base: int, out: Path
) -> dict[str, Any]:
    """The fleet in its own process (it must not share the hub's GIL or RSS)."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "simulators.fleet",
            "--port",
            str(port),
            "--homes",
            str(homes),
            "--seed",
            str(SEED),
            "--plan-seed",
            str(SEED + seq_base // 1_000_000),  # another draw per step, the same homes
            "--start",
            PEAK_START,
            "--seconds",
            str(seconds),
            "--incidents",
            str(incidents),
            "--seq-base",
            str(seq_base),
            "--out",
            str(out),
        ],
        check=True,
    )
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def run_step(
    runtime: HubRuntime,
    stamps: _Stamps,
    log: SimulatorProcess,
    broker_port: int,
    label: str,
    *,
    homes: int,
    seconds: float,
    incidents: int,
    step: int,
    work: Path,
    ramp: bool = False,
) -> Step:
    """Publish ``seconds`` of the morning peak from ``homes`` homes with ``incidents`` falls."""
    done_before = stamps.committed
    arrivals_before = len(log.arrivals)
    report = _publish(
        broker_port, homes, seconds, incidents, step * 1_000_000, work / f"{label}-{step}.json"
    )
    end = CLOCK.monotonic()
    start = float(report["started_at"])
    statuses = int(report["statuses"])
    events = int(report["sent"]) - statuses
    planned_events = int(report["planned"]) - int(report["by_what"].get("status", 0))
    committed_end = stamps.committed_at(end) - done_before
    mid_sent = sum(
        v for k, v in report["per_second"].items() if int(k) < seconds / 2
    )  # events only: the publisher counts no status reports per second
    committed_mid = stamps.committed_at(start + seconds / 2) - done_before
    pause = threading.Event()
    deadline = end + DRAIN_WAIT_S
    while stamps.committed - done_before < events and CLOCK.monotonic() < deadline:
        pause.wait(0.05)
    drained = CLOCK.monotonic()
    sms_deadline = drained + SMS_WAIT_S
    wanted = {int(i["home_id"].rsplit("-", 1)[1]) for i in report["incidents"]}
    while CLOCK.monotonic() < sms_deadline and len(_first_sms(log, arrivals_before)) < len(wanted):
        pause.wait(0.05)
    first = _first_sms(log, arrivals_before)
    alarm_ms: list[float] = []
    sms_ms: list[float] = []
    for incident in report["incidents"]:
        sent = incident["sent_at"]
        if sent is None:
            continue
        committed = stamps.fall_after(incident["device_id"], sent)
        if committed is not None:
            alarm_ms.append((committed - sent) * 1000)
        index = int(incident["home_id"].rsplit("-", 1)[1])
        if index in first and first[index] >= sent:
            sms_ms.append((first[index] - sent) * 1000)
    total_committed = stamps.committed - done_before
    last = stamps.series[-1][0] if stamps.series else end
    backlog_end = max(0, events - committed_end)
    offered = planned_events / seconds
    keeps_up = (
        backlog_end <= max(BACKLOG_FLOOR, BACKLOG_LIMIT_S * offered)
        and len(alarm_ms) == incidents
        and percentile(alarm_ms, 0.99) <= ALARM_P99_LIMIT_MS
    )
    result = Step(
        target=label,
        homes=homes,
        seconds=seconds,
        offered_per_s=offered,
        statuses=statuses,
        events_sent=events,
        events_committed=committed_end,
        backlog_end=backlog_end,
        backlog_mid=max(0, mid_sent - committed_mid),
        stored_per_s=total_committed / (last - start) if last > start else 0.0,
        drain_s=max(0.0, drained - end) if total_committed >= events else float("inf"),
        publisher_late_s=float(report["late_s"]),
        incidents=incidents,
        alarms=len(alarm_ms),
        sms=len(sms_ms),
        alarm_p50_ms=percentile(alarm_ms, 0.50),
        alarm_p99_ms=percentile(alarm_ms, 0.99),
        alarm_max_ms=max(alarm_ms, default=float("nan")),
        sms_p50_ms=percentile(sms_ms, 0.50),
        sms_p99_ms=percentile(sms_ms, 0.99),
        sms_max_ms=max(sms_ms, default=float("nan")),
        rss_mib=_rss_mib(),
        keeps_up=keeps_up,
        ramp=ramp,
    )
    _close_open_alarms(runtime)
    return result


def _first_sms(log: SimulatorProcess, skip: int) -> dict[int, float]:
    """Resident index → arrival of the first fall SMS naming them, among arrivals after ``skip``."""
    first: dict[int, float] = {}
    for at, to, body in list(log.arrivals)[skip:]:
        match = _FALL_SMS.search(body)
        if to == NURSE_PHONE and match:
            first.setdefault(int(match.group(1)), at)
    return first


# -- one target ---------------------------------------------------------------------------------
@contextmanager
def _hub(broker: MosquittoProcess, db_url: str, label: str) -> Iterator[tuple[HubRuntime, Any]]:
    """The real hub as the escalation benchmark runs it: ingest, rules, escalation, sender, the
    portal (for the simulator's status callbacks), and the Twilio simulator in its own process."""
    migrate.upgrade(db_url)
    portal_port = free_port()
    portal_url = f"http://127.0.0.1:{portal_port}"
    sim = SimulatorProcess(account_sid=SID, auth_token=TOKEN, portal_url=portal_url)
    sim.start()
    settings = Settings(
        mqtt=MqttSettings(host=broker.host, port=broker.port, client_id=f"bench-fleet-{label}"),
        database=DatabaseSettings(url=db_url),
        portal=PortalSettings(port=portal_port, public_base_url=portal_url),
        twilio=sim.twilio_settings(),
    )
    stamps = _Stamps()
    runtime = HubRuntime(settings, sinks=[stamps])
    portal_stop = threading.Event()
    portal = threading.Thread(target=runtime.serve_portal, args=(portal_stop,), daemon=True)
    try:
        seed_zone(runtime.session_factory, CLOCK.now())
        runtime.start()
        if not runtime.ingest.wait_connected(10):
            raise RuntimeError("the hub did not connect to the broker")
        portal.start()
        _wait(lambda: _portal_up(portal_url), 10, "the portal did not start")
        yield runtime, (stamps, sim)
    finally:
        sim.stop()
        portal_stop.set()
        portal.join(10)
        runtime.stop()


def measure_target(
    broker: MosquittoProcess,
    db_url: str,
    label: str,
    *,
    sizes: Sequence[int],
    ramp: Sequence[int],
    seconds: float,
    ramp_seconds: float,
    incidents: int,
    log: Callable[[str], None],
    work: Path,
) -> list[Step]:
    """The measured sizes, then the ramp until the hub no longer keeps up."""
    steps: list[Step] = []
    seeded = 0
    with _hub(broker, db_url, label) as (runtime, (stamps, arrivals)):
        plan = [(n, seconds, False) for n in sizes] + [(n, ramp_seconds, True) for n in ramp]
        for number, (homes, secs, is_ramp) in enumerate(plan, start=1):
            if homes > seeded:
                t0 = CLOCK.monotonic()
                # built per step and dropped: the layout is the publisher's, not the hub's memory
                fleet = build_fleet(homes, seed=SEED)
                seed_fleet(runtime.session_factory, fleet[seeded:homes], CLOCK.now())
                del fleet
                gc.collect()
                log(f"  seeded {homes - seeded:,} homes in {CLOCK.monotonic() - t0:.1f} s")
                seeded = homes
            step = run_step(
                runtime,
                stamps,
                arrivals,
                broker.port,
                label,
                homes=homes,
                seconds=secs,
                incidents=min(incidents, homes),
                step=number,
                work=work,
                ramp=is_ramp,
            )
            steps.append(step)
            log(
                f"  {label} {homes:,} homes: {step.offered_per_s:,.0f} ev/s offered, "
                f"{step.stored_per_s:,.0f} stored, backlog {step.backlog_end:,}, "
                f"alarm p99 {step.alarm_p99_ms:,.0f} ms, SMS p99 {step.sms_p99_ms:,.0f} ms, "
                f"RSS {step.rss_mib:,.0f} MiB, {'keeps up' if step.keeps_up else 'FALLS BEHIND'}"
            )
            if is_ramp and not step.keeps_up:
                break
    return steps


def run_fleet_bench(
    *,
    sizes: Sequence[int] = SIZES,
    ramp: Sequence[int] = RAMP,
    seconds: float = 30.0,
    ramp_seconds: float = 20.0,
    incidents: int = 20,
    pg_admin_url: str | None,
    log: Callable[[str], None] = print,
) -> FleetResult:
    """Every step on SQLite and, if given, PostgreSQL, each target in a fresh process (its
    RSS is the hub's alone: a process's memory does not shrink back after the other target)."""
    result = FleetResult()
    targets = ["sqlite", *(["postgresql"] if pg_admin_url else [])]
    with tempfile.TemporaryDirectory(prefix="carehub-bench-fleet-") as tmp:
        for label in targets:
            log(f"fleet on {label}: sizes {list(sizes)}, ramp {list(ramp)}")
            out = Path(tmp) / f"{label}.json"
            child = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bench.fleet",
                    label,
                    "--sizes",
                    ",".join(map(str, sizes)),
                    "--ramp",
                    ",".join(map(str, ramp)),
                    "--seconds",
                    str(seconds),
                    "--ramp-seconds",
                    str(ramp_seconds),
                    "--incidents",
                    str(incidents),
                    "--pg-admin-url",
                    pg_admin_url or "",
                    "--out",
                    str(out),
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            assert child.stdout is not None
            for line in child.stdout:
                log(line.rstrip())
            if child.wait() != 0:
                raise RuntimeError(f"the fleet benchmark on {label} failed ({child.returncode})")
            result.steps.extend(Step(**step) for step in json.loads(out.read_text()))
    return result


def _measure_one(args: argparse.Namespace) -> None:
    """One target in this process (``python -m bench.fleet sqlite|postgresql …``)."""
    logging.getLogger("hub").setLevel(logging.ERROR)
    logging.getLogger("apscheduler").setLevel(logging.ERROR)

    def log(line: str) -> None:
        print(line, flush=True)

    def sizes(text: str) -> list[int]:
        return [int(n) for n in text.split(",") if n]

    with tempfile.TemporaryDirectory(prefix="carehub-bench-fleet-") as tmp:
        work = Path(tmp)
        database: AbstractContextManager[str]
        if args.target == "sqlite":
            database = _sqlite_database(work / "fleet.db")
        else:
            from bench.pg import temporary_database

            database = temporary_database(args.pg_admin_url)
        with MosquittoProcess(work / "broker") as broker, database as url:
            steps = measure_target(
                broker,
                url,
                args.target,
                sizes=sizes(args.sizes),
                ramp=sizes(args.ramp),
                seconds=args.seconds,
                ramp_seconds=args.ramp_seconds,
                incidents=args.incidents,
                log=log,
                work=work,
            )
    args.out.write_text(json.dumps([asdict(s) for s in steps]))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet")
    parser.add_argument("target", choices=("sqlite", "postgresql"))
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--ramp", default=",".join(map(str, RAMP)))
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--ramp-seconds", type=float, default=20.0)
    parser.add_argument("--incidents", type=int, default=20)
    parser.add_argument("--pg-admin-url", default="")
    parser.add_argument("--out", type=Path, required=True)
    _measure_one(parser.parse_args())


def as_json(result: FleetResult) -> dict[str, Any]:
    targets = sorted({s.target for s in result.steps})
    return {
        "steps": [asdict(s) for s in result.steps],
        "largest_kept_up": {t: result.largest(t) for t in targets},
        "rss_kib_per_1000_homes": {t: result.rss_kib_per_1000(t) for t in targets},
        "limits": {
            "backlog_s": BACKLOG_LIMIT_S,
            "backlog_floor": BACKLOG_FLOOR,
            "alarm_p99_ms": ALARM_P99_LIMIT_MS,
        },
    }


def table(result: FleetResult) -> Table:
    """The steps as a rich table."""
    out = Table(
        "target",
        "homes",
        "ev/s offered",
        "ev/s stored",
        "backlog mid/end",
        "drain s",
        "incidents",
        "→ alarm p50/p99/max ms",
        "→ SMS p50/p99/max ms",
        "RSS MiB",
        "keeps up",
        title="fleet at the morning peak: incident (fall) → alarm committed, → first SMS",
    )
    for s in result.steps:
        out.add_row(
            s.target,
            f"{s.homes:,}{' (ramp)' if s.ramp else ''}",
            f"{s.offered_per_s:,.0f}",
            f"{s.stored_per_s:,.0f}",
            f"{s.backlog_mid:,} / {s.backlog_end:,}",
            f"{s.drain_s:,.1f}",
            f"{s.alarms}/{s.sms}/{s.incidents}",
            f"{s.alarm_p50_ms:,.0f} / {s.alarm_p99_ms:,.0f} / {s.alarm_max_ms:,.0f}",
            f"{s.sms_p50_ms:,.0f} / {s.sms_p99_ms:,.0f} / {s.sms_max_ms:,.0f}",
            f"{s.rss_mib:,.0f}",
            "yes" if s.keeps_up else "NO",
        )
    return out


def summary(result: FleetResult) -> list[str]:
    """One line per target: the largest fleet kept up with and memory per 1,000 homes."""
    lines = []
    for target in sorted({s.target for s in result.steps}):
        largest = result.largest(target)
        tried = max(s.homes for s in result.steps if s.target == target)
        per_1000 = result.rss_kib_per_1000(target)
        ceiling = "" if largest is None or largest < tried else " (the largest tried)"
        lines.append(
            f"{target}: keeps up with {largest or 0:,} homes{ceiling} "
            f"(backlog ≤ {BACKLOG_LIMIT_S:.0f} s of load, → alarm p99 ≤ "
            f"{ALARM_P99_LIMIT_MS:,.0f} ms); RSS growth "
            + ("n/a" if per_1000 is None else f"{per_1000:,.0f} KiB per 1,000 homes")
        )
    return lines


if __name__ == "__main__":
    main()
