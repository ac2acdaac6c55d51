"""The hub's ingest through a real Mosquitto into SQLite and PostgreSQL."""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from paho.mqtt.client import ConnectFlags
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode
from prometheus_client import REGISTRY
from sqlalchemy import func, select
from sqlalchemy.orm import sessionmaker

from hub.broker import MosquittoProcess
from hub.config import DatabaseSettings, MqttSettings, Settings
from hub.ingest.pipeline import IngestProcessor
from hub.ingest.service import IngestService, subscriptions
from hub.runtime import HubRuntime
from hub.storage.models import Device, DiscoveredDevice, RejectedMessage, SensorEvent
from tests.factories import add_home
from tests.mqtt_helpers import Publisher, wait_until
from tests.providers import RecordingProvider

pytestmark = pytest.mark.broker


def _settings(broker: MosquittoProcess, db_url: str, client_id: str = "carehub-test") -> Settings:
    return Settings(
        mqtt=MqttSettings(host=broker.host, port=broker.port, client_id=client_id),
        database=DatabaseSettings(url=db_url),
    )


@pytest.fixture
def hub(mosquitto: MosquittoProcess, db_url: str) -> Iterator[HubRuntime]:
    runtime = HubRuntime(_settings(mosquitto, db_url), provider=RecordingProvider())
    add_home(runtime.session_factory)
    runtime.start()
    assert runtime.ingest.wait_connected(10)
    yield runtime
    runtime.stop()


@pytest.fixture
def publisher(mosquitto: MosquittoProcess) -> Iterator[Publisher]:
    pub = Publisher(mosquitto.host, mosquitto.port)
    yield pub
    pub.close()


def _native(seq: int, kind: str = "fall", **extra: object) -> dict[str, object]:
    ts = datetime(2026, 1, 5, 14, 32, seq % 60, tzinfo=UTC).isoformat()
    return {"type": kind, "ts": ts, "seq": seq, **extra}


def _count(runtime: HubRuntime, *where: object) -> int:
    with runtime.session_factory() as session:
        query = select(func.count()).select_from(SensorEvent)
        for clause in where:
            query = query.where(clause)  # type: ignore[arg-type]
        return int(session.scalar(query) or 0)


def _metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_good_bad_and_unknown_messages_each_land_where_they_should(
    hub: HubRuntime, publisher: Publisher
) -> None:
    rejected_before = _metric("carehub_messages_rejected_total", reason="invalid_json")
    busy_before = _metric("carehub_ingest_busy_seconds_total")
    publisher.publish("carehub/v1/h1/d-fall/event", b"{oops")
    publisher.publish("carehub/v1/h1/d-door/event", _native(1, "door", open=1))
    publisher.publish("carehub/v1/h1/d-door/event", json.dumps({"pad": "x" * 5000}))
    publisher.publish("carehub/v1/h9/stranger/event", _native(1, "button", action="press"))
    publisher.publish("carehub/v1/h1/d-fall/event", _native(1, "fall", confidence=0.9))
    publisher.publish("zigbee2mqtt/hall_door", {"contact": False, "battery": 77})

    wait_until(lambda: _count(hub, SensorEvent.kind.in_(["fall", "door"])) == 2)
    with hub.session_factory() as session:
        reasons = session.scalars(select(RejectedMessage.reason_code).order_by(RejectedMessage.id))
        assert list(reasons) == ["invalid_json", "schema", "oversized"]
        [stranger] = session.scalars(select(DiscoveredDevice)).all()
        door = session.get(Device, "z-door")
    assert (stranger.identifier, stranger.home_hint) == ("stranger", "h9")
    assert door is not None and door.battery == 77 and door.online is True
    assert _metric("carehub_messages_rejected_total", reason="invalid_json") == rejected_before + 1
    # the worker's time in its transactions is counted: its rate is the worker's utilization
    assert hub.ingest.busy_s > 0
    assert _metric("carehub_ingest_busy_seconds_total") >= busy_before + hub.ingest.busy_s


def test_events_published_while_the_hub_is_down_arrive_when_it_returns(
    mosquitto: MosquittoProcess, db_url: str, publisher: Publisher
) -> None:
    settings = _settings(mosquitto, db_url, client_id="carehub-offline-test")
    first = HubRuntime(settings, provider=RecordingProvider())
    add_home(first.session_factory)
    first.start()
    assert first.ingest.wait_connected(10)
    first.stop()  # the persistent session stays with the broker

    for seq in range(1, 51):
        publisher.publish("carehub/v1/h1/d-fall/event", _native(seq))

    second = HubRuntime(settings, provider=RecordingProvider())
    second.start()
    try:
        wait_until(lambda: _count(second, SensorEvent.kind == "fall") == 50)
    finally:
        second.stop()


def test_a_broker_restart_loses_nothing_the_hub_had_not_taken(
    mosquitto: MosquittoProcess, db_url: str, publisher: Publisher
) -> None:
    settings = _settings(mosquitto, db_url, client_id="carehub-restart-test")
    runtime = HubRuntime(settings, provider=RecordingProvider())
    add_home(runtime.session_factory)
    runtime.start()
    assert runtime.ingest.wait_connected(10)
    runtime.stop()
    for seq in range(1, 21):
        publisher.publish("carehub/v1/h1/d-fall/event", _native(seq))
    publisher.close()
    mosquitto.restart()  # graceful: the broker saves its queue

    again = HubRuntime(settings, provider=RecordingProvider())
    again.start()
    try:
        wait_until(lambda: _count(again, SensorEvent.kind == "fall") == 20, timeout=20)
    finally:
        again.stop()


def test_a_started_hub_freezes_its_start_up_heap_and_stopping_unfreezes_it(
    mosquitto: MosquittoProcess, sqlite_url: str
) -> None:
    """``HubRuntime.start`` freezes what start-up built (full collections skip it);
    ``stop`` hands it back to the collector, so runtimes made and dropped (tests, the
    benchmarks) leak nothing."""
    assert gc.get_freeze_count() == 0
    runtime = HubRuntime(_settings(mosquitto, sqlite_url), provider=RecordingProvider())
    try:
        runtime.start()
        assert gc.get_freeze_count() > 10_000  # the modules, mappers, caches of start-up
    finally:
        runtime.stop()
    assert gc.get_freeze_count() == 0


class _Subscriber:
    """The one thing ``_on_connect`` asks of paho's client: it records the subscriptions."""

    def __init__(self) -> None:
        self.topics: list[tuple[str, int]] = []

    def subscribe(self, topics: list[tuple[str, int]]) -> tuple[int, int]:
        self.topics.extend(topics)
        return 0, 1


def test_the_hub_is_ready_only_when_the_broker_has_granted_its_subscriptions(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``wait_connected`` means "subscribed": a message published between the CONNACK and the
    SUBACK of a first connection is not routed to the hub's session, so a caller (the demo, a
    test) that publishes as soon as the hub says it is connected could lose it. A refused
    subscription leaves the hub not ready and says why."""
    settings = Settings()
    granted = [ReasonCode(PacketTypes.SUBACK, identifier=1) for _ in subscriptions(settings)]
    refused = [ReasonCode(PacketTypes.SUBACK, "Not authorized"), *granted[1:]]
    for codes, ready in ((granted, True), (refused, False)):
        service = IngestService(settings, IngestProcessor(settings, sessionmaker()))
        client = _Subscriber()
        accepted = ReasonCode(PacketTypes.CONNACK, "Success")
        service._on_connect(client, None, ConnectFlags(False), accepted, None)  # type: ignore[arg-type]
        assert client.topics == [(topic, 1) for topic in subscriptions(settings)]
        assert not service.wait_connected(0)  # connected, not yet subscribed
        assert service.status() == "disconnected"  # what /healthz shows meanwhile
        service._on_subscribe(client, None, 1, codes, None)  # type: ignore[arg-type]
        assert service.wait_connected(0) is ready
        assert service.status() == ("connected" if ready else "subscription refused")
    assert "MQTT subscription refused (Not authorized)" in caplog.text
