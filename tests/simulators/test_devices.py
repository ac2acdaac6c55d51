"""Virtual devices against a real Mosquitto: events arrive, statuses are retained, wills fire."""

from __future__ import annotations

import json
import queue
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from devices.events import Decoded, EventKind
from hub.broker import MosquittoProcess, free_port
from hub.clock import FakeClock, SystemClock
from hub.storage.models import DeviceType, Protocol
from simulators.devices import BrokerUnavailable, DevicePublisher, VirtualDevice
from simulators.homes import HomeFleet

WAIT_S = 5.0

MessageFilter = Callable[[mqtt.MQTTMessage], bool]


class Inbox:
    """Collects a subscriber's messages; tests wait on them with a timeout, never a sleep."""

    def __init__(self, client: mqtt.Client | None = None) -> None:
        self.client = client
        self._queue: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self._unclaimed: list[mqtt.MQTTMessage] = []
        self.seen: list[mqtt.MQTTMessage] = []

    def on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        self._queue.put(message)

    def wait_for(self, matches: MessageFilter, timeout: float = WAIT_S) -> mqtt.MQTTMessage:
        """The first not yet claimed message that ``matches``, in arrival order; fails if none
        arrives within ``timeout``."""
        for index, message in enumerate(self._unclaimed):
            if matches(message):
                return self._unclaimed.pop(index)
        clock = SystemClock()
        deadline = clock.monotonic() + timeout
        while (remaining := deadline - clock.monotonic()) > 0:
            try:
                message = self._queue.get(timeout=remaining)
            except queue.Empty:
                break
            self.seen.append(message)
            if matches(message):
                return message
            self._unclaimed.append(message)
        got = [(m.topic, m.payload) for m in self.seen]
        raise AssertionError(f"no matching message within {timeout} s; got {got}")

    def subscribe(self, *topics: str) -> Inbox:
        assert self.client is not None, "this inbox has no client of its own"
        subscribe(self.client, *topics)
        return self

    def wait_for_count(self, matches: MessageFilter, count: int) -> list[mqtt.MQTTMessage]:
        return [self.wait_for(matches) for _ in range(count)]


def on_topic(topic: str, payload: bytes | None = None) -> MessageFilter:
    return lambda m: m.topic == topic and (payload is None or m.payload == payload)


def subscribe(client: mqtt.Client, *topics: str) -> None:
    """Subscribe at QoS 1 and wait for the SUBACK (so that nothing published after is missed)."""
    acked = threading.Event()
    client.on_subscribe = lambda *_args: acked.set()
    client.subscribe([(topic, 1) for topic in topics])
    assert acked.wait(WAIT_S), f"no SUBACK for {topics}"


@pytest.fixture
def subscriber(mqtt_client_factory: Any) -> Inbox:
    """A connected client whose messages land in the returned inbox (subscribe it yourself)."""
    inbox = Inbox()
    inbox.client = mqtt_client_factory(on_message=inbox.on_message)
    return inbox


@pytest.fixture
def late_subscriber(mqtt_client_factory: Any) -> Callable[..., Inbox]:
    """Make a subscriber only when the test wants one (to see what the broker retained)."""

    def make(*topics: str) -> Inbox:
        inbox = Inbox()
        subscribe(mqtt_client_factory(on_message=inbox.on_message), *topics)
        return inbox

    return make


@pytest.fixture
def publishers(mosquitto: MosquittoProcess) -> Iterator[Callable[..., DevicePublisher]]:
    """Connected publishers to the test's broker; closed at teardown."""
    made: list[DevicePublisher] = []

    def make(devices: VirtualDevice | list[VirtualDevice], **kwargs: Any) -> DevicePublisher:
        publisher = DevicePublisher(devices, host=mosquitto.host, port=mosquitto.port, **kwargs)
        made.append(publisher)
        publisher.connect()
        return publisher

    yield make
    for publisher in made:
        publisher.close()


def device(
    device_type: DeviceType = DeviceType.FALL_SENSOR,
    protocol: Protocol = Protocol.NATIVE,
    identifier: str = "kari-fall",
    **kwargs: Any,
) -> VirtualDevice:
    return VirtualDevice(
        identifier=identifier, home_id="kari", type=device_type, protocol=protocol, **kwargs
    )


# --- publishing ---------------------------------------------------------------------------------


def test_a_subscriber_receives_the_event_with_the_contract_payload(
    publishers: Callable[..., DevicePublisher], subscriber: Inbox
) -> None:
    inbox = subscriber.subscribe("carehub/v1/#")
    fall_sensor = device(battery=81)
    publisher = publishers(fall_sensor)

    sent = fall_sensor.fall(confidence=0.9)
    publisher.publish(sent)

    received = inbox.wait_for(on_topic("carehub/v1/kari/kari-fall/event"))
    assert received.payload == sent.payload
    assert received.qos == 1
    assert json.loads(received.payload) == {
        "type": "fall",
        "ts": json.loads(sent.payload)["ts"],
        "seq": 1,
        "confidence": 0.9,
        "battery": 81,
    }


def test_a_late_subscriber_finds_the_retained_online_status(
    publishers: Callable[..., DevicePublisher], late_subscriber: Callable[..., Inbox]
) -> None:
    publishers(device(battery=64, rssi=-58))  # connect() returns once the status is acknowledged

    inbox = late_subscriber("carehub/v1/kari/+/status")

    status = inbox.wait_for(on_topic("carehub/v1/kari/kari-fall/status"))
    assert status.retain is True
    assert json.loads(status.payload) == {"online": True, "battery": 64, "rssi": -58}


def test_zigbee2mqtt_device_announces_availability_and_publishes_state(
    publishers: Callable[..., DevicePublisher],
    subscriber: Inbox,
    late_subscriber: Callable[..., Inbox],
) -> None:
    inbox = subscriber.subscribe("zigbee2mqtt/+")
    door = device(
        DeviceType.DOOR_CONTACT,
        Protocol.ZIGBEE2MQTT,
        "kari-front-door",
        battery=90,
        linkquality=111,
        availability_format="json",
    )
    publisher = publishers(door)

    publisher.publish(door.door(open=True))

    state = inbox.wait_for(on_topic("zigbee2mqtt/kari-front-door"))
    assert json.loads(state.payload) == {"contact": False, "battery": 90, "linkquality": 111}
    availability = late_subscriber("zigbee2mqtt/+/availability").wait_for(
        on_topic("zigbee2mqtt/kari-front-door/availability")
    )
    assert availability.retain and json.loads(availability.payload) == {"state": "online"}


def test_heartbeats_republish_the_status_periodically(
    publishers: Callable[..., DevicePublisher], subscriber: Inbox
) -> None:
    inbox = subscriber.subscribe("carehub/v1/kari/kari-button/status")
    button = device(DeviceType.ALARM_BUTTON, identifier="kari-button", battery=50)
    publisher = publishers(button)

    publisher.start_heartbeat(0.05)
    beats = inbox.wait_for_count(lambda m: not m.retain, 3)

    assert [json.loads(m.payload) for m in beats] == [{"online": True, "battery": 50}] * 3
    publisher.stop_heartbeat()
    assert publisher.heartbeats_sent >= 2


def test_one_shared_connection_speaks_for_several_devices_without_a_will(
    publishers: Callable[..., DevicePublisher], late_subscriber: Callable[..., Inbox]
) -> None:
    door = device(DeviceType.DOOR_CONTACT, identifier="kari-door")
    pir = device(DeviceType.MOTION_SENSOR, identifier="kari-pir")
    with pytest.raises(ValueError, match="one last will per connection"):
        DevicePublisher([door, pir])

    publisher = publishers([door, pir], will=False)
    publisher.publish(pir.motion(detected=True))

    inbox = late_subscriber("carehub/v1/kari/+/status")
    topics = {inbox.wait_for(lambda m: m.retain).topic for _ in range(2)}
    assert topics == {"carehub/v1/kari/kari-door/status", "carehub/v1/kari/kari-pir/status"}


def test_an_unreachable_broker_is_a_readable_error() -> None:
    port = free_port()
    publisher = DevicePublisher(device(), port=port, timeout_s=1.0)

    with pytest.raises(
        BrokerUnavailable, match=f"cannot reach the MQTT broker at 127.0.0.1:{port}"
    ):
        publisher.connect()


# --- dying --------------------------------------------------------------------------------------


def test_an_abrupt_death_makes_the_broker_publish_the_last_will(
    publishers: Callable[..., DevicePublisher],
    subscriber: Inbox,
    late_subscriber: Callable[..., Inbox],
) -> None:
    status_topic = "carehub/v1/kari/kari-fall/status"
    inbox = subscriber.subscribe(status_topic)
    publisher = publishers(device(battery=12))
    inbox.wait_for(on_topic(status_topic, b'{"online":true,"battery":12}'))

    publisher.die()

    will = inbox.wait_for(on_topic(status_topic))
    assert json.loads(will.payload) == {"online": False}
    assert not publisher.connected
    # Retained: whoever looks later (the hub after a restart) learns the device is offline.
    retained = late_subscriber(status_topic).wait_for(on_topic(status_topic))
    assert retained.retain and json.loads(retained.payload) == {"online": False}


def test_a_zigbee2mqtt_device_dies_offline_on_its_availability_topic(
    publishers: Callable[..., DevicePublisher], subscriber: Inbox
) -> None:
    topic = "zigbee2mqtt/kari-pendant/availability"
    inbox = subscriber.subscribe(topic)
    pendant = device(DeviceType.ALARM_BUTTON, Protocol.ZIGBEE2MQTT, "kari-pendant")
    publisher = publishers(pendant)
    inbox.wait_for(on_topic(topic, b"online"))

    publisher.die()

    assert inbox.wait_for(on_topic(topic)).payload == b"offline"


def test_a_clean_close_does_not_fire_the_will(
    publishers: Callable[..., DevicePublisher], late_subscriber: Callable[..., Inbox]
) -> None:
    publisher = publishers(device(battery=None))

    publisher.close()

    status_topic = "carehub/v1/kari/kari-fall/status"
    retained = late_subscriber(status_topic).wait_for(on_topic(status_topic))
    assert json.loads(retained.payload) == {"online": True}


# --- the fleet ----------------------------------------------------------------------------------


def fleet_events(seed: int, n: int, clock: FakeClock | None = None) -> list[tuple[str, bytes]]:
    fleet = HomeFleet(4, rate_per_min=60, seed=seed, clock=clock or FakeClock())
    return [(e.message.topic, e.message.payload) for e in (fleet.next_event() for _ in range(n))]


def test_a_fleet_is_deterministic_for_a_seed() -> None:
    assert fleet_events(7, 50) == fleet_events(7, 50)
    assert fleet_events(7, 50) != fleet_events(8, 50)


def test_every_home_has_the_four_device_types_and_the_fleet_mixes_protocols() -> None:
    fleet = HomeFleet(4, rate_per_min=10, seed=1)

    for home in fleet.homes:
        types = Counter(d.type for d in home.devices)
        assert types[DeviceType.FALL_SENSOR] == types[DeviceType.DOOR_CONTACT] == 1
        assert types[DeviceType.ALARM_BUTTON] == 1
        assert 1 <= types[DeviceType.MOTION_SENSOR] <= 3
    assert {d.protocol for d in fleet.devices} == {Protocol.NATIVE, Protocol.ZIGBEE2MQTT}
    assert len({d.identifier for d in fleet.devices}) == len(fleet.devices)


def test_days_are_mostly_motion_nights_are_quieter_at_the_door() -> None:
    noon = FakeClock(datetime(2026, 1, 5, 11, 0, tzinfo=UTC))  # 12:00 in Oslo
    night = FakeClock(datetime(2026, 1, 5, 2, 0, tzinfo=UTC))  # 03:00 in Oslo

    day_fleet = HomeFleet(5, rate_per_min=60, seed=3, clock=noon)
    night_fleet = HomeFleet(5, rate_per_min=60, seed=3, clock=night)
    day_kinds = Counter(day_fleet.next_event().kind for _ in range(1000))
    night_kinds = Counter(night_fleet.next_event().kind for _ in range(1000))

    assert day_kinds[EventKind.MOTION] > 800
    assert day_kinds[EventKind.DOOR] > night_kinds[EventKind.DOOR]
    assert 0 < day_kinds[EventKind.BUTTON] < 50
    assert 0 < day_kinds[EventKind.FALL] < 50


def test_a_door_opens_before_it_closes_and_seq_keeps_increasing() -> None:
    clock = FakeClock()
    fleet = HomeFleet(1, rate_per_min=60, seed=5, clock=clock)
    door_states: list[bool] = []
    seqs: dict[str, list[int]] = {}
    for _ in range(300):
        event = fleet.next_event()
        clock.advance(timedelta(seconds=fleet.next_delay_s()))
        if event.kind is EventKind.DOOR:
            door_states.append("opened" in event.description)
        if event.device.is_native:
            seq = json.loads(event.message.payload)["seq"]
            seqs.setdefault(event.device.identifier, []).append(seq)

    assert door_states[:4] == [True, False, True, False]
    for numbers in seqs.values():
        assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)


def test_a_fleet_run_publishes_decodable_events_and_announces_every_device(
    mosquitto: MosquittoProcess, subscriber: Inbox, late_subscriber: Callable[..., Inbox]
) -> None:
    from devices.codecs import decode

    inbox = subscriber.subscribe("carehub/v1/+/+/event", "zigbee2mqtt/+")
    fleet = HomeFleet(2, rate_per_min=6000, seed=11)
    sent: list[tuple[str, bytes]] = []

    summary = fleet.run(
        duration_s=10,
        host=mosquitto.host,
        port=mosquitto.port,
        heartbeat_s=None,
        max_events=8,
        on_event=lambda event, _summary: sent.append((event.message.topic, event.message.payload)),
    )

    assert (summary.published, summary.failed, sum(summary.by_kind.values())) == (8, 0, 8)
    # Each publish waited for its PUBACK before the next: the broker saw them in this order.
    received = inbox.wait_for_count(lambda m: True, 8)
    assert [(m.topic, m.payload) for m in received] == sent
    for topic, payload in sent:
        assert isinstance(decode(topic, payload), Decoded), (topic, payload)
    statuses = late_subscriber("carehub/v1/+/+/status", "zigbee2mqtt/+/availability")
    retained = {statuses.wait_for(lambda m: m.retain).topic for _ in fleet.devices}
    assert len(retained) == len(fleet.devices)
