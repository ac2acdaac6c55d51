"""Fleet load: thousands of homes at realistic, seeded event rates with bursts, sent over a few
gateway connections, with incidents (falls) injected at known times for latency measurement.

The plan (which device sends what, when) is pure and deterministic for a seed; publishing it is
a thin shell. Run ``python -m simulators.fleet --help`` for the command line the benchmark uses.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from devices.catalogue import info
from hub.clock import Clock, SystemClock
from hub.storage.models import DeviceType, Protocol
from simulators import payloads
from simulators.payloads import MqttMessage

logger = logging.getLogger(__name__)

DEFAULT_TZ = ZoneInfo("Europe/Oslo")
# Events per home per hour, by local hour. A home with a fall sensor, a door contact, two or
# three PIR sensors and a pendant: PIRs with a one-minute hold time report an occupancy change
# a few dozen times an hour while someone moves about, a few times an hour at night (bathroom
# visits). The morning peak (getting up, breakfast, the home-care visit) is about twice the day.
HOURLY_RATE: tuple[float, ...] = (
    (3.0,) * 6  # 00–06
    + (15.0,)  # 06–07 waking
    + (60.0, 60.0)  # 07–09 morning peak
    + (30.0,) * 12  # 09–21
    + (15.0, 8.0, 4.0)  # 21–24 winding down
)
MORNING_PEAK_HOURS = (7, 9)
DOOR_SHARE = 0.12  # of ordinary events; the rest is motion
BUTTON_PRESSES_PER_DAY = 0.1  # a pendant press every ten days, per home
FALSE_FALLS_PER_DAY = 0.05  # a fall sensor's false alarm every 20 days, per home
MAX_PAIR_S = 180.0  # the longest simulated time between the two events of a pair
MOTION_ROOMS = ("living", "bedroom", "bathroom", "kitchen")
HOMES_PER_GATEWAY = 1000  # one MQTT connection (a Zigbee2MQTT bridge or gateway) per 1,000 homes
QOS = 1


@dataclass(frozen=True, slots=True)
class FleetDevice:
    """One virtual device of the fleet (its id is also its Zigbee2MQTT friendly name)."""

    device_id: str
    home_id: str
    type: DeviceType
    protocol: Protocol
    room: str

    @property
    def supervision_s(self) -> int:
        return info(self.type).default_supervision_interval_s


@dataclass(frozen=True, slots=True)
class FleetHome:
    """A home: fall sensor, door contact, two or three motion sensors, button; one gateway."""

    index: int
    home_id: str
    gateway: int
    devices: tuple[FleetDevice, ...]  # fall, door, motion..., button

    @property
    def fall(self) -> FleetDevice:
        return self.devices[0]

    @property
    def door(self) -> FleetDevice:
        return self.devices[1]

    @property
    def motion(self) -> tuple[FleetDevice, ...]:
        return self.devices[2:-1]

    @property
    def button(self) -> FleetDevice:
        return self.devices[-1]


def home_id(prefix: str, index: int) -> str:
    return f"{prefix}-{index:05d}"


def build_fleet(
    homes: int,
    *,
    seed: int,
    z2m_share: float = 0.3,
    prefix: str = "fh",
    homes_per_gateway: int = HOMES_PER_GATEWAY,
) -> tuple[FleetHome, ...]:
    """The fleet's homes and devices, the same for the same arguments.

    A home's devices speak one protocol (a home has either a Zigbee2MQTT bridge or a native
    gateway); ``z2m_share`` of the homes are Zigbee2MQTT.
    """
    if homes < 1:
        raise ValueError("a fleet needs at least one home")
    if not 0 <= z2m_share <= 1:
        raise ValueError("z2m_share must be in 0..1")
    rng = random.Random(f"fleet-layout-{seed}")
    built = []
    for n in range(homes):
        hid = home_id(prefix, n)
        protocol = Protocol.ZIGBEE2MQTT if rng.random() < z2m_share else Protocol.NATIVE
        rooms = MOTION_ROOMS[: rng.randint(2, 3)]

        spec = (
            ("fall", DeviceType.FALL_SENSOR, "bedroom"),
            ("door", DeviceType.DOOR_CONTACT, "entrance"),
            *((f"m-{r}", DeviceType.MOTION_SENSOR, r) for r in rooms),
            ("button", DeviceType.ALARM_BUTTON, "living"),
        )
        devices = tuple(FleetDevice(f"{hid}-{x}", hid, t, protocol, room) for x, t, room in spec)
        built.append(FleetHome(n, hid, n // homes_per_gateway, devices))
    return tuple(built)


# --- the plan: what is sent when ---------------------------------------------------------------


@dataclass(frozen=True, slots=True, order=True)
class Planned:
    """One message, ``at_s`` real seconds after the start. ``what``: motion-on, motion-off,
    door-open, door-closed, button, fall, status. ``incident`` numbers an injected incident."""

    at_s: float
    home: int  # index into the planned fleet (not FleetHome.index when a slice was planned)
    device: int  # index into the home's devices
    what: str
    incident: int | None = None


@dataclass(frozen=True, slots=True)
class Incident:
    """An injected fall: where, and when it is due (real seconds after the start)."""

    number: int
    home_id: str
    device_id: str
    protocol: Protocol
    at_s: float


@dataclass(frozen=True, slots=True)
class Burst:
    """A gateway whose broker connection drops for ``outage_s`` at ``at_s``: it holds its homes'
    messages and sends them all when it is back, with every device's availability."""

    gateway: int
    at_s: float
    outage_s: float


@dataclass(frozen=True, slots=True)
class FleetPlan:
    messages: tuple[Planned, ...]
    incidents: tuple[Incident, ...]
    bursts: tuple[Burst, ...]
    start: datetime  # the simulated local time of ``at_s`` 0
    speed: float

    def per_second(self) -> Counter[int]:
        """Messages due in each real second of the run."""
        return Counter(int(m.at_s) for m in self.messages)

    def by_what(self) -> Counter[str]:
        return Counter(m.what for m in self.messages)


def hourly_rate(hour: int) -> float:
    """Ordinary events per home per hour at a local hour (0–23)."""
    return HOURLY_RATE[hour % 24]


def plan_fleet(
    fleet: Sequence[FleetHome],
    *,
    seed: int,
    start: datetime,
    duration_s: float,
    speed: float = 1.0,
    incidents: int = 0,
    bursts: Sequence[Burst] = (),
    heartbeats: bool = True,
    tz: tzinfo = DEFAULT_TZ,
) -> FleetPlan:
    """Plan ``duration_s`` real seconds of the fleet's life from the simulated local time
    ``start``, with simulated time running ``speed`` times faster than real time.

    Ordinary events are a Poisson process whose rate follows :data:`HOURLY_RATE` (thinning, so
    the morning peak and the quiet night come out of the same draw); each picks a home, then a
    door (opened, closed again 10–90 s later) or a motion sensor (on, off 1–3 min later;
    bedroom and bathroom weigh more at night), times in simulated seconds. Buttons and false
    falls are rarer, per home per day. Every device sends its status once per supervision
    interval at a seeded phase. ``incidents`` falls are spread evenly
    over the run in distinct homes, where no ordinary button or fall is planned. A
    :class:`Burst` moves its gateway's messages of the outage to its end.
    """
    if duration_s <= 0 or speed <= 0:
        raise ValueError("duration and speed must be positive")
    if incidents > len(fleet):
        raise ValueError("at most one incident per home")
    rng = random.Random(f"fleet-plan-{seed}")
    start_local = start.astimezone(tz)
    sim_s = duration_s * speed  # simulated seconds covered
    homes = len(fleet)
    out: list[Planned] = []

    def local_hour(at_s: float) -> int:
        return (start_local + timedelta(seconds=at_s * speed)).hour

    incident_homes = rng.sample(range(homes), incidents)
    quiet = set(incident_homes)
    for k, h in enumerate(incident_homes):
        out.append(Planned((k + 0.5) * duration_s / incidents, h, 0, "fall", k))

    # ordinary events come in pairs (motion on → off after the PIR's hold time; door open →
    # closed): thinning of a Poisson process of pairs at the fleet's peak rate (per real second)
    peak = homes * max(HOURLY_RATE) / 2 / 3600.0 * speed
    # start before the window so that the pairs begun earlier end inside it (a steady state)
    t = -MAX_PAIR_S / speed + rng.expovariate(peak)
    while t < duration_s:
        hour = local_hour(t)
        if rng.random() < hourly_rate(hour) / max(HOURLY_RATE):
            h = rng.randrange(homes)
            if rng.random() < DOOR_SHARE:
                closed_after = rng.uniform(10.0, 90.0) / speed  # a visit, fetching the paper
                out.append(Planned(t, h, 1, "door-open"))
                out.append(Planned(t + closed_after, h, 1, "door-closed"))
            else:
                sensors = fleet[h].motion
                night = hour < 6 or hour >= 22
                weights = [
                    3.0 if night and d.room in ("bedroom", "bathroom") else 1.0 for d in sensors
                ]
                i = 2 + rng.choices(range(len(sensors)), weights=weights)[0]
                hold = rng.uniform(60.0, 180.0) / speed  # PIR hold time plus movement
                out.append(Planned(t, h, i, "motion-on"))
                out.append(Planned(t + hold, h, i, "motion-off"))
        t += rng.expovariate(peak)
    out = [m for m in out if 0 <= m.at_s < duration_s]

    # rare events, uniform over the simulated period
    for what, per_day in (("button", BUTTON_PRESSES_PER_DAY), ("fall", FALSE_FALLS_PER_DAY)):
        expected = homes * per_day * sim_s / 86400.0
        for _ in range(_poisson(rng, expected)):
            h = rng.randrange(homes)
            if h in quiet:
                continue
            index = 0 if what == "fall" else len(fleet[h].devices) - 1
            out.append(Planned(rng.uniform(0, duration_s), h, index, what))

    if heartbeats:
        for h, home in enumerate(fleet):
            for i, device in enumerate(home.devices):
                every = device.supervision_s / speed  # real seconds between status reports
                at = rng.uniform(0, every)  # a seeded phase
                while at < duration_s:
                    out.append(Planned(at, h, i, "status"))
                    at += every

    for burst in bursts:
        out = _apply_burst(out, fleet, burst)
    out.sort()
    reported = tuple(
        Incident(
            k,
            fleet[h].home_id,
            fleet[h].fall.device_id,
            fleet[h].fall.protocol,
            (k + 0.5) * duration_s / incidents,
        )
        for k, h in enumerate(incident_homes)
    )
    return FleetPlan(tuple(out), reported, tuple(bursts), start_local, speed)


def _apply_burst(
    messages: list[Planned], fleet: Sequence[FleetHome], burst: Burst
) -> list[Planned]:
    """Hold the gateway's messages during the outage; at its end send them and re-announce."""
    back = burst.at_s + burst.outage_s
    moved = []
    for m in messages:
        held = fleet[m.home].gateway == burst.gateway and burst.at_s <= m.at_s < back
        # held messages keep their order: a tiny offset by their original time
        moved.append(
            Planned(back + m.at_s * 1e-9, m.home, m.device, m.what, m.incident) if held else m
        )
    for h, home in enumerate(fleet):
        if home.gateway == burst.gateway:
            moved.extend(Planned(back, h, i, "status") for i in range(len(home.devices)))
    return moved


def _poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw (Knuth's method for small means, normal approximation for large)."""
    if mean <= 0:
        return 0
    if mean > 50:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


# --- building the messages -------------------------------------------------------------------


@dataclass(slots=True)
class MessageFactory:
    """Turns planned messages into MQTT messages: native or Zigbee2MQTT, ``ts`` from the clock,
    ``seq`` increasing per device from ``seq_base`` (give a later run a higher base)."""

    fleet: Sequence[FleetHome]
    clock: Clock
    tz: tzinfo = DEFAULT_TZ
    seq_base: int = 0
    _seq: dict[str, int] = field(default_factory=dict)

    def build(self, planned: Planned) -> MqttMessage:
        device = self.fleet[planned.home].devices[planned.device]
        what = planned.what
        if device.protocol is Protocol.ZIGBEE2MQTT:
            name = device.device_id
            if what == "status":
                return payloads.z2m_availability(name, online=True)
            if what == "fall":
                return payloads.z2m_fall(name, status="fall")
            if what == "button":
                return payloads.z2m_button(name, action="press")
            if what.startswith("door"):
                return payloads.z2m_door(name, open=what == "door-open")
            return payloads.z2m_motion(name, occupancy=what == "motion-on")
        hid, did = device.home_id, device.device_id
        if what == "status":
            return payloads.native_status(hid, did, online=True, battery=90)
        seq = self._seq.get(did, self.seq_base) + 1
        self._seq[did] = seq
        ts = self.clock.now().astimezone(self.tz)
        if what == "fall":
            return payloads.native_fall(hid, did, ts=ts, seq=seq, confidence=0.95)
        if what == "button":
            return payloads.native_button(hid, did, action="press", ts=ts, seq=seq)
        if what.startswith("door"):
            return payloads.native_door(hid, did, open=what == "door-open", ts=ts, seq=seq)
        return payloads.native_motion(hid, did, motion=what == "motion-on", ts=ts, seq=seq)


# --- the shell: publishing over a few connections ----------------------------------------------


@dataclass(slots=True)
class PublishReport:
    """What a run sent: counts, per-second counts, and each incident's send time."""

    sent: int = 0
    failed: int = 0
    incidents: dict[int, float] = field(default_factory=dict)  # number → monotonic send time
    per_second: Counter[int] = field(default_factory=Counter)  # events (no status reports)
    statuses: int = 0
    started_at: float = 0.0  # monotonic time of at_s 0
    elapsed_s: float = 0.0
    late_s: float = 0.0  # how far behind its plan the publisher fell at worst


def publish_plan(
    fleet: Sequence[FleetHome],
    plan: FleetPlan,
    *,
    host: str = "127.0.0.1",
    port: int = 1883,
    seq_base: int = 0,
    client_prefix: str = "fleet-gw",
    stop: threading.Event | None = None,
    on_incident: Callable[[Incident, float], None] | None = None,
    timeout_s: float = 60.0,
) -> PublishReport:
    """Publish the plan on time, one MQTT connection per gateway (QoS 1), then wait for every
    PUBACK. Times are ``SystemClock().monotonic()`` (CLOCK_MONOTONIC, shared between processes).
    """
    real = SystemClock()
    factory = MessageFactory(fleet, real, seq_base=seq_base)
    gateways = sorted({home.gateway for home in fleet})
    clients = {g: _connect(host, port, f"{client_prefix}-{g}", timeout_s) for g in gateways}
    report = PublishReport()
    pending: list[mqtt.MQTTMessageInfo] = []
    by_number = {i.number: i for i in plan.incidents}
    wait = stop or threading.Event()
    try:
        report.started_at = real.monotonic()
        for planned in plan.messages:
            delay = report.started_at + planned.at_s - real.monotonic()
            if delay > 0 and wait.wait(delay):
                break
            report.late_s = max(report.late_s, -delay)
            message = factory.build(planned)
            client = clients[fleet[planned.home].gateway]
            info_ = client.publish(message.topic, message.payload, qos=QOS, retain=message.retain)
            now = real.monotonic()
            if info_.rc != mqtt.MQTT_ERR_SUCCESS:
                report.failed += 1
                continue
            pending.append(info_)
            report.sent += 1
            if planned.what == "status":
                report.statuses += 1
            else:
                report.per_second[int(now - report.started_at)] += 1
            if planned.incident is not None:
                report.incidents[planned.incident] = now
                if on_incident is not None:
                    on_incident(by_number[planned.incident], now)
        for info_ in pending:
            info_.wait_for_publish(timeout_s)
        report.elapsed_s = real.monotonic() - report.started_at
    finally:
        for client in clients.values():
            client.disconnect()
            client.loop_stop()
    return report


def _connect(host: str, port: int, client_id: str, timeout_s: float) -> mqtt.Client:
    connected = threading.Event()
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    client.on_connect = lambda *_: connected.set()
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect(host, port)
    client.loop_start()
    if not connected.wait(timeout_s):
        client.loop_stop()
        raise RuntimeError(f"fleet gateway {client_id}: cannot connect to {host}:{port}")
    return client


# --- command line (the benchmark runs this in its own process) ---------------------------------


def _args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m simulators.fleet", description="Publish a seeded fleet's load."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--homes", type=int, required=True)
    parser.add_argument("--seed", type=int, default=7, help="the fleet's layout")
    parser.add_argument("--plan-seed", type=int, help="what happens when (default: --seed)")
    parser.add_argument("--z2m-share", type=float, default=0.3)
    parser.add_argument("--prefix", default="fh")
    parser.add_argument(
        "--start", default="2026-01-05T07:30:00+01:00", help="simulated local start (ISO 8601)"
    )
    parser.add_argument("--seconds", type=float, default=30.0, help="real seconds to run")
    parser.add_argument("--speed", type=float, default=1.0)
    parser.add_argument("--incidents", type=int, default=0)
    parser.add_argument(
        "--burst",
        default="",
        help="GATEWAY:AT_S:OUTAGE_S, a gateway's reconnect burst (repeatable with commas)",
    )
    parser.add_argument("--seq-base", type=int, default=0)
    parser.add_argument("--homes-from", type=int, default=0, help="only homes from this index")
    parser.add_argument("--out", type=Path, help="write the report as JSON here")
    return parser.parse_args(argv)


def parse_bursts(text: str) -> tuple[Burst, ...]:
    """``"0:10:5,3:20:2"`` → bursts (gateway, at_s, outage_s)."""
    bursts = []
    for part in filter(None, text.split(",")):
        g, at, outage = part.split(":")
        bursts.append(Burst(int(g), float(at), float(outage)))
    return tuple(bursts)


def main(argv: Sequence[str] | None = None) -> None:
    args = _args(argv)
    fleet = build_fleet(args.homes, seed=args.seed, z2m_share=args.z2m_share, prefix=args.prefix)
    active = fleet[args.homes_from :]
    plan = plan_fleet(
        active,
        seed=args.seed if args.plan_seed is None else args.plan_seed,
        start=datetime.fromisoformat(args.start),
        duration_s=args.seconds,
        speed=args.speed,
        incidents=args.incidents,
        bursts=parse_bursts(args.burst),
    )
    # planned indexes refer to ``active``; publish against it
    report = publish_plan(active, plan, host=args.host, port=args.port, seq_base=args.seq_base)
    body = {
        "sent": report.sent,
        "failed": report.failed,
        "planned": len(plan.messages),
        "statuses": report.statuses,
        "by_what": dict(plan.by_what()),
        "started_at": report.started_at,
        "elapsed_s": report.elapsed_s,
        "late_s": report.late_s,
        "per_second": {str(k): v for k, v in sorted(report.per_second.items())},
        "incidents": [
            {
                "number": i.number,
                "home_id": i.home_id,
                "device_id": i.device_id,
                "protocol": i.protocol.value,
                "at_s": i.at_s,
                "sent_at": report.incidents.get(i.number),
            }
            for i in plan.incidents
        ],
    }
    text = json.dumps(body)
    if args.out:
        args.out.write_text(text)
    else:
        print(text)


if __name__ == "__main__":
    main()
