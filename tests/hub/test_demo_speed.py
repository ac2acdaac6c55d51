"""``carehub demo --speed``: the demo's wiring on a fast scaled clock, a real broker, the SMS
simulator and the portal (for the nurse's SMS reply): incidents become alarms, SMS and takes."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from cryptography.fernet import Fernet
from rich.console import Console
from sqlalchemy import select

from hub.broker import MosquittoProcess, free_port
from hub.clock import ScaledClock, SystemClock
from hub.config import (
    DatabaseSettings,
    MqttSettings,
    PortalSettings,
    SecuritySettings,
    Settings,
    TwilioSettings,
)
from hub.demo import DemoRun, demo_settings, start_demo, start_sms_gateway
from hub.storage.models import Alarm, AlarmStatus, SensorEvent
from simulators.demo_day import Incident

pytestmark = pytest.mark.broker

OSLO = ZoneInfo("Europe/Oslo")
START = datetime(2026, 1, 5, 5, 55, tzinfo=OSLO)  # a Monday morning, long before real "now"
SPEED = 300.0  # five simulated minutes a real second
NURSE = "+4790000001"
COORDINATOR = "+4790000002"
SCHEDULE = (
    Incident(
        time(6, 5),
        0,
        "fall",
        "Kari falls",
        quiet=timedelta(minutes=30),
        nurse_after=timedelta(minutes=1),
    ),
    Incident(time(6, 10), 1, "button", "Ola presses his button"),
)


def _wait(what: str, ready: Callable[[], bool], timeout_s: float = 20.0) -> None:
    real = SystemClock()
    deadline = real.monotonic() + timeout_s
    pause = threading.Event()
    while not ready():
        if real.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        pause.wait(0.05)


@pytest.fixture
def demo(mosquitto: MosquittoProcess, db_url: str) -> Iterator[tuple[DemoRun, str, list[str]]]:
    sim_url = f"http://127.0.0.1:{free_port()}"
    portal_port = free_port()
    settings = demo_settings(
        Settings(
            mqtt=MqttSettings(host=mosquitto.host, port=mosquitto.port, client_id="demo-speed"),
            database=DatabaseSettings(url=db_url),
            portal=PortalSettings(
                port=portal_port, public_base_url=f"http://127.0.0.1:{portal_port}"
            ),
            twilio=TwilioSettings(api_base_url=sim_url),
            # given, so that demo_settings makes none under var/
            security=SecuritySettings(
                data_keys=[Fernet.generate_key().decode()], link_secret="demo-speed-test"
            ),
        ),
        SPEED,
    )
    told: list[str] = []
    gateway = start_sms_gateway(settings, Console(quiet=True))
    assert gateway is not None
    _wait("the SMS simulator", lambda: bool(gateway.started))
    run = start_demo(
        settings,
        clock=ScaledClock(SPEED, START),
        broker_host=mosquitto.host,
        broker_port=mosquitto.port,
        simulate=True,
        tell=told.append,
        schedule=SCHEDULE,
    )
    stop = threading.Event()
    portal = threading.Thread(target=run.runtime.serve_portal, args=(stop,), daemon=True)
    portal.start()
    try:
        yield run, sim_url, told
    finally:
        run.stop()
        stop.set()
        portal.join(10)
        gateway.should_exit = True


def _sms(sim_url: str, to: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{sim_url}/_sim/messages", params={"to": to, "kind": "sms"}, timeout=5)
    return [m for m in answer.json() if m["direction"] == "outbound-api"]


def _alarms(run: DemoRun) -> list[Alarm]:
    with run.runtime.session_factory() as session:
        return list(session.scalars(select(Alarm).order_by(Alarm.id)))


def test_scheduled_incidents_escalate_by_sms_on_the_scaled_clock_and_the_nurse_takes_one(
    demo: tuple[DemoRun, str, list[str]],
) -> None:
    run, sim_url, told = demo

    # Kari falls at 06:05 simulated (two real seconds in): a red fall alarm, an SMS to the nurse
    _wait("the fall alarm", lambda: any(a.type == "fall" for a in _alarms(run)))
    _wait("the nurse's SMS", lambda: any("Kari" in m["body"] for m in _sms(sim_url, NURSE)))

    # the simulated nurse replies "1 <code>" one simulated minute later: the alarm is taken
    def kari_taken() -> bool:
        return any(
            a.type == "fall" and a.status == AlarmStatus.ACKNOWLEDGED.value for a in _alarms(run)
        )

    _wait("the nurse to take Kari's fall by SMS", kari_taken)
    inbound = httpx.get(
        f"{sim_url}/_sim/messages", params={"direction": "inbound"}, timeout=5
    ).json()
    assert any(m["from"] == NURSE and m["body"].startswith("1 ") for m in inbound)

    # Ola's button at 06:10 is left for the visitor: after the policy's 2-minute wait (0.4 s
    # real at this speed) step 2 reaches the coordinator too, so escalation waits are scaled
    _wait("Ola's button alarm", lambda: any(a.type == "button" for a in _alarms(run)))
    _wait(
        "step 2's SMS to the coordinator",
        lambda: any("Ola" in m["body"] for m in _sms(sim_url, COORDINATOR)),
    )
    ola = next(a for a in _alarms(run) if a.type == "button")
    assert ola.status in (AlarmStatus.OPEN.value, AlarmStatus.NOTIFIED.value)

    # everything is in simulated time: the devices' timestamps, the alarms, the hub's clock
    with run.runtime.session_factory() as session:
        stamps = list(session.scalars(select(SensorEvent.received_at)))
        event_ts = [t for t in session.scalars(select(SensorEvent.event_ts)) if t is not None]
    now = run.clock.now()
    assert stamps and event_ts
    assert all(START <= t <= now for t in [*stamps, *event_ts])
    kari = next(a for a in _alarms(run) if a.type == "fall")
    assert START + timedelta(minutes=10) <= kari.opened_at <= now  # 06:05 or (loaded) later
    assert any("Kari falls" in line for line in told)
    assert any("the nurse replies 1" in line for line in told)
