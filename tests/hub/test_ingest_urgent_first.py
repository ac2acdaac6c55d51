"""Falls go first through a real Mosquitto, on SQLite and PostgreSQL (ADR 18): a fall queued
behind other homes' routine events is committed before them, with its own home's earlier
events; its PUBACK still waits for the older messages, so a crash in between loses nothing."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from hub.broker import MosquittoProcess
from hub.config import DatabaseSettings, MqttSettings, Settings
from hub.ingest.pipeline import BatchOutcome
from hub.runtime import HubRuntime
from hub.storage.models import Alarm, DeviceType, Protocol, SensorEvent
from tests.factories import add_home
from tests.mqtt_helpers import Publisher, wait_until
from tests.providers import RecordingProvider

pytestmark = pytest.mark.broker

HOMES = ("ha", "hb", "hc")


class Gate:
    """An ingest sink after the rules: records each committed batch's sensor events (device,
    kind; a device's first event also stores its "online" status, left out here),
    holds a batch while ``open`` is clear, and fails batches with a device in ``down_for`` as
    a database outage would (the worker keeps such a batch and retries it)."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.open.set()
        self.entered = threading.Event()
        self.down_for: set[str] = set()
        self.batches: list[list[tuple[str, str]]] = []

    def handle(self, session: Session, outcome: BatchOutcome) -> None:
        self.entered.set()
        if not self.open.wait(20):
            raise AssertionError("the gate was never opened")
        events = [(e.device_id, e.kind) for e in outcome.stored if e.kind != "status"]
        if self.down_for & {device for device, _ in events}:
            raise OperationalError("COMMIT", None, Exception("database down (test)"))
        self.batches.append(events)

    def after_commit(self, info: dict[str, Any]) -> None:
        pass


def _hub(broker: MosquittoProcess, db_url: str, client_id: str, gate: Gate) -> HubRuntime:
    settings = Settings(
        mqtt=MqttSettings(host=broker.host, port=broker.port, client_id=client_id),
        database=DatabaseSettings(url=db_url),
    )
    return HubRuntime(settings, provider=RecordingProvider(), sinks=[gate])


def _homes(runtime: HubRuntime) -> None:
    for home in HOMES:
        add_home(
            runtime.session_factory,
            home,
            devices=(
                (f"{home}-door", DeviceType.DOOR_CONTACT, Protocol.NATIVE, None),
                (f"{home}-fall", DeviceType.FALL_SENSOR, Protocol.NATIVE, None),
            ),
        )


def _event(kind: str, seq: int) -> dict[str, object]:
    ts = datetime(2026, 1, 5, 14, 32, seq, tzinfo=UTC).isoformat()
    extra: dict[str, object] = {"open": seq % 2 == 0} if kind == "door" else {}
    return {"type": kind, "ts": ts, "seq": seq, **extra}


def _send(publisher: Publisher, home: str, kind: str, seq: int) -> None:
    device = f"{home}-{kind}"
    publisher.publish(f"carehub/v1/{home}/{device}/event", _event(kind, seq))


def _start_held(runtime: HubRuntime, gate: Gate, publisher: Publisher) -> None:
    """Seed the homes, start the hub, and hold its worker in a batch with home ha's door
    event, so that what is published next waits in its queue."""
    _homes(runtime)
    runtime.start()
    assert runtime.ingest.wait_connected(10)
    gate.open.clear()
    _send(publisher, "ha", "door", 1)
    assert gate.entered.wait(10)


def _stored(runtime: HubRuntime, *where: Any) -> int:
    """Sensor events stored (a device's "online" status rows left out)."""
    query = select(func.count()).select_from(SensorEvent).where(SensorEvent.kind != "status")
    with runtime.session_factory() as session:
        return int(session.scalar(query.where(*where)) or 0)


def _duplicates() -> float:
    return REGISTRY.get_sample_value("carehub_events_duplicate_total") or 0.0


@pytest.fixture
def publisher(mosquitto: MosquittoProcess) -> Iterator[Publisher]:
    pub = Publisher(mosquitto.host, mosquitto.port, client_id="urgent-first-devices")
    yield pub
    pub.close()


def test_a_fall_overtakes_other_homes_routine_events_but_not_its_own_homes(
    mosquitto: MosquittoProcess, db_url: str, publisher: Publisher
) -> None:
    gate = Gate()
    runtime = _hub(mosquitto, db_url, "urgent-first-order", gate)
    try:
        _start_held(runtime, gate, publisher)
        _send(publisher, "hb", "door", 1)
        _send(publisher, "hc", "door", 1)  # the fall's own home: must stay before the fall
        _send(publisher, "ha", "door", 2)
        _send(publisher, "hc", "fall", 2)
        _send(publisher, "hb", "door", 3)
        wait_until(lambda: runtime.ingest.backlog() == 5)
        gate.open.set()
        wait_until(lambda: _stored(runtime) >= 6)
        assert gate.batches == [
            [("ha-door", "door")],
            [("hc-door", "door"), ("hc-fall", "fall")],
            [("hb-door", "door"), ("ha-door", "door"), ("hb-door", "door")],
        ]
        with runtime.session_factory() as session:
            alarms = session.scalars(select(Alarm.home_id)).all()
        assert alarms == ["hc"]
    finally:
        gate.open.set()
        runtime.stop()


def test_a_fall_committed_ahead_is_acknowledged_only_after_the_older_messages(
    mosquitto: MosquittoProcess, db_url: str, publisher: Publisher
) -> None:
    """The fall commits while an older routine event cannot (database down for it); the hub
    stops. Its broker session still holds both: the fall was committed but not acknowledged.
    The next hub gets both again: the routine event is stored, the fall absorbed as a
    duplicate, one alarm in all."""
    gate = Gate()
    first = _hub(mosquitto, db_url, "urgent-first-acks", gate)
    try:
        _start_held(first, gate, publisher)
        _send(publisher, "hb", "door", 1)
        _send(publisher, "hc", "fall", 1)
        wait_until(lambda: first.ingest.backlog() == 2)
        gate.down_for = {"hb-door"}
        gate.open.set()
        wait_until(lambda: len(gate.batches) == 2)
        assert gate.batches[1] == [("hc-fall", "fall")]
        assert _stored(first, SensorEvent.device_id == "hb-door") == 0
    finally:
        gate.open.set()
        first.stop()

    before = _duplicates()
    again = _hub(mosquitto, db_url, "urgent-first-acks", Gate())
    again.start()
    try:
        wait_until(lambda: _stored(again, SensorEvent.device_id == "hb-door") == 1)
        wait_until(lambda: _duplicates() == before + 1)  # the fall came back
        assert _stored(again, SensorEvent.device_id == "hc-fall") == 1
        with again.session_factory() as session:
            assert session.scalar(select(func.count()).select_from(Alarm)) == 1
    finally:
        again.stop()
