"""The fleet load generator: deterministic plans, realistic rates with a day rhythm, bursts,
reported incidents, and publishing over a few gateway connections to a real Mosquitto."""

from __future__ import annotations

import json
import threading
from collections import Counter
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
import pytest

from devices.codecs import decode
from devices.events import Decoded
from hub.broker import MosquittoProcess
from hub.clock import SystemClock
from hub.storage.models import Protocol
from simulators.fleet import (
    HOURLY_RATE,
    Burst,
    build_fleet,
    hourly_rate,
    plan_fleet,
    publish_plan,
)
from tests.fixtures.broker import MqttClientFactory
from tests.mqtt_helpers import wait_until

OSLO = ZoneInfo("Europe/Oslo")
PEAK = datetime(2026, 1, 5, 7, 30, tzinfo=OSLO)
MIDNIGHT = datetime(2026, 1, 5, 0, 0, tzinfo=OSLO)


def _events(plan_messages: Any) -> list[Any]:
    return [m for m in plan_messages if m.what != "status"]


def test_the_same_seed_gives_the_same_fleet_and_plan_and_another_seed_does_not() -> None:
    fleet = build_fleet(500, seed=3)
    assert fleet == build_fleet(500, seed=3)
    assert build_fleet(100, seed=3) == fleet[:100]  # a smaller fleet is the bigger one's start
    one = plan_fleet(fleet, seed=9, start=PEAK, duration_s=20, incidents=4)
    two = plan_fleet(fleet, seed=9, start=PEAK, duration_s=20, incidents=4)
    other = plan_fleet(fleet, seed=10, start=PEAK, duration_s=20, incidents=4)
    assert one == two
    assert one.messages != other.messages
    assert {h.devices[0].protocol for h in fleet} == {Protocol.NATIVE, Protocol.ZIGBEE2MQTT}


def test_rates_follow_the_hourly_profile_and_motion_dominates() -> None:
    homes = 2000
    fleet = build_fleet(homes, seed=1)
    duration = 60.0
    plan = plan_fleet(fleet, seed=1, start=PEAK, duration_s=duration, heartbeats=False)
    events = _events(plan.messages)
    expected = homes * hourly_rate(7) / 3600 * duration  # 60 per home per hour at 07:30
    assert 0.85 * expected <= len(events) <= 1.15 * expected
    kinds = Counter(m.what.split("-")[0] for m in events)
    assert kinds["motion"] > 0.8 * len(events)
    assert 0.08 * len(events) <= kinds["door"] <= 0.16 * len(events)
    assert kinds["fall"] + kinds["button"] < 0.01 * len(events)  # rare: per home per day

    # the whole simulated day at 1,440×: the morning peak is busier than the day, night quietest
    day = plan_fleet(fleet[:200], seed=2, start=MIDNIGHT, duration_s=60, speed=1440)
    per_hour = Counter(int(m.at_s * 1440 // 3600) for m in _events(day.messages))
    assert per_hour[7] + per_hour[8] > 1.6 * (per_hour[12] + per_hour[13])
    assert per_hour[12] > 5 * per_hour[3]
    for hour in (3, 8, 12):
        wanted = 200 * HOURLY_RATE[hour]
        assert 0.75 * wanted <= per_hour[hour] <= 1.25 * wanted, hour


def test_every_device_reports_its_status_once_per_supervision_interval() -> None:
    fleet = build_fleet(50, seed=4)
    plan = plan_fleet(fleet, seed=4, start=PEAK, duration_s=3600)  # one supervision interval
    statuses = Counter((m.home, m.device) for m in plan.messages if m.what == "status")
    assert statuses == {(h, d): 1 for h, home in enumerate(fleet) for d in range(len(home.devices))}


def test_a_reconnect_burst_sends_the_held_messages_and_every_availability_at_once() -> None:
    fleet = build_fleet(3000, seed=5)  # gateways 0, 1, 2 with 1,000 homes each
    calm = plan_fleet(fleet, seed=5, start=PEAK, duration_s=30)
    burst = plan_fleet(fleet, seed=5, start=PEAK, duration_s=30, bursts=[Burst(1, 10.0, 5.0)])
    per_second = burst.per_second()
    typical = sorted(calm.per_second().values())[15]
    assert per_second[15] > 10 * typical  # the burst: held events plus ~6,000 availabilities
    gateway_1 = {h for h, home in enumerate(fleet) if home.gateway == 1}
    during = [m for m in burst.messages if 10 <= m.at_s < 15 and m.home in gateway_1]
    assert during == []  # nothing from the gateway while it is away
    assert len(_events(burst.messages)) == len(_events(calm.messages))  # held, not lost


def test_incidents_are_spread_over_the_run_in_distinct_homes_and_reported() -> None:
    fleet = build_fleet(300, seed=6)
    plan = plan_fleet(fleet, seed=6, start=PEAK, duration_s=30, incidents=10)
    assert [i.at_s for i in plan.incidents] == [1.5 + 3 * k for k in range(10)]
    assert len({i.home_id for i in plan.incidents}) == 10
    falls = [m for m in plan.messages if m.incident is not None]
    assert sorted(m.incident for m in falls if m.incident is not None) == list(range(10))
    for incident in plan.incidents:
        home = next(h for h in fleet if h.home_id == incident.home_id)
        assert incident.device_id == home.fall.device_id
        # no ordinary fall or button muddles the incident's home
        others = [
            m
            for m in plan.messages
            if fleet[m.home].home_id == incident.home_id
            and m.what in ("fall", "button")
            and m.incident is None
        ]
        assert others == []


def test_publishing_over_gateway_connections_delivers_decodable_messages_and_incident_times(
    mosquitto: MosquittoProcess, mqtt_client_factory: MqttClientFactory
) -> None:
    fleet = build_fleet(60, seed=8, homes_per_gateway=20)  # three gateways
    plan = plan_fleet(fleet, seed=8, start=PEAK, duration_s=3, speed=20, incidents=3)
    received: list[mqtt.MQTTMessage] = []
    lock = threading.Lock()

    def on_message(_c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        with lock:
            received.append(message)

    subscribed = threading.Event()
    listener = mqtt_client_factory("fleet-listener", on_message=on_message)
    listener.on_subscribe = lambda *_: subscribed.set()
    listener.subscribe([("carehub/v1/#", 1), ("zigbee2mqtt/#", 1)])
    assert subscribed.wait(5)
    before = SystemClock().monotonic()
    report = publish_plan(fleet, plan, host=mosquitto.host, port=mosquitto.port)
    assert report.sent == len(plan.messages) and report.failed == 0
    wait_until(lambda: len(received) >= report.sent, timeout=10)
    native_kinds: Counter[str] = Counter()
    # every incident was sent near its planned time, and the times are reported
    assert sorted(report.incidents) == [0, 1, 2]
    for incident in plan.incidents:
        sent = report.incidents[incident.number]
        assert before <= sent
        assert abs(sent - report.started_at - incident.at_s) < 1.0  # on time, give or take load
    # every message is one the hub can decode (native v1 or Zigbee2MQTT)
    for message in received:
        decoded = decode(message.topic, bytes(message.payload))
        assert isinstance(decoded, Decoded), (message.topic, message.payload)
        if message.topic.startswith("carehub/v1/") and message.topic.endswith("/event"):
            native_kinds[json.loads(message.payload)["type"]] += 1
    native_falls = sum(1 for i in plan.incidents if i.protocol is Protocol.NATIVE)
    assert native_kinds["fall"] >= native_falls
    assert native_kinds["motion"] > native_kinds["door"]


@pytest.mark.parametrize("bad", [0, -1])
def test_a_fleet_needs_homes(bad: int) -> None:
    with pytest.raises(ValueError):
        build_fleet(bad, seed=1)


def test_timestamps_come_from_the_clock_in_local_time() -> None:
    from hub.clock import FakeClock
    from simulators.fleet import MessageFactory, Planned

    fleet = build_fleet(20, seed=2, z2m_share=0.0)
    clock = FakeClock(PEAK)
    factory = MessageFactory(fleet, clock, seq_base=100)
    first = json.loads(factory.build(Planned(0.0, 0, 2, "motion-on")).payload)
    clock.advance(timedelta(minutes=1))
    second = json.loads(factory.build(Planned(1.0, 0, 2, "motion-off")).payload)
    assert (first["seq"], second["seq"]) == (101, 102)
    assert datetime.fromisoformat(first["ts"]) == PEAK
    assert first["ts"].endswith("+01:00")
    assert datetime.fromisoformat(second["ts"]) - PEAK == timedelta(minutes=1)
