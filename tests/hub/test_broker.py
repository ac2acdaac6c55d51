"""The broker CareHub ships keeps every QoS 1 message for an offline hub, across restarts too.

Real Mosquitto processes, each test its own (``tests.fixtures.broker``).
"""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from hub.broker import (
    AUTOSAVE_INTERVAL_S,
    BROKER_SETTINGS,
    MAX_QUEUED_MESSAGES,
    MosquittoProcess,
    broker_reachable,
    render_config,
)
from tests.fixtures.broker import MqttClientFactory, connect_client
from tests.mqtt_helpers import wait_until

pytestmark = pytest.mark.broker

REPO_ROOT = Path(__file__).resolve().parents[2]
SHIPPED_CONFIG = REPO_ROOT / "deploy" / "mosquitto" / "carehub.conf"
TOPIC = "carehub/v1/home-1/fall-sensor-1/event"
HUB_ID = "carehub-hub-under-test"
SESSION_EXPIRY_S = 3600
DEBIAN_DEFAULT_QUEUE = 1000


class Inbox:
    """Collects the payloads a subscriber receives, thread-safely."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._payloads: list[str] = []

    def on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self._payloads.append(message.payload.decode())

    @property
    def payloads(self) -> list[str]:
        with self._lock:
            return list(self._payloads)

    def __len__(self) -> int:
        with self._lock:
            return len(self._payloads)


def subscribe(client: mqtt.Client, topic: str, qos: int = 1) -> None:
    """Subscribe and wait for the SUBACK granting ``qos``."""
    granted: list[Any] = []
    done = threading.Event()

    def on_subscribe(
        _client: mqtt.Client, _userdata: Any, _mid: int, reason_codes: Any, _props: Any
    ) -> None:
        granted.extend(reason_codes)
        done.set()

    client.on_subscribe = on_subscribe
    client.subscribe(topic, qos=qos)
    assert done.wait(10), "no SUBACK"
    assert [code.value for code in granted] == [qos], f"subscription refused: {granted}"


def go_offline(client: mqtt.Client) -> None:
    """A clean DISCONNECT: the session (and what is queued for it) stays with the broker."""
    gone = threading.Event()
    client.on_disconnect = lambda *_args: gone.set()
    client.disconnect()
    assert gone.wait(10), "no disconnect"
    client.loop_stop()


def publish_all(client: mqtt.Client, count: int) -> None:
    """Publish ``count`` QoS 1 messages (payloads "0".."count-1") and wait for every PUBACK."""
    infos = [client.publish(TOPIC, str(n), qos=1) for n in range(count)]
    for info in infos:
        info.wait_for_publish(30)
    assert all(info.is_published() for info in infos), "the broker did not acknowledge all"


def offline_hub_session(factory: MqttClientFactory) -> None:
    """The hub's persistent MQTT 5 session, subscribed at QoS 1, now offline."""
    hub = factory(HUB_ID, clean_start=False, session_expiry_s=SESSION_EXPIRY_S)
    subscribe(hub, "carehub/v1/+/+/event", qos=1)
    go_offline(hub)


def hub_comes_back(factory: MqttClientFactory) -> Inbox:
    inbox = Inbox()
    factory(
        HUB_ID,
        clean_start=False,
        session_expiry_s=SESSION_EXPIRY_S,
        on_message=inbox.on_message,
    )
    return inbox


def wait_until_quiet(inbox: Inbox, quiet_s: float = 1.0, timeout: float = 30.0) -> None:
    """Wait until something arrived and then nothing more for ``quiet_s``."""
    wait_until(lambda: len(inbox) > 0, timeout=timeout)
    last = -1
    pause = threading.Event()
    while len(inbox) != last:
        last = len(inbox)
        pause.wait(quiet_s)


def test_offline_hub_receives_all_5000_messages_published_while_it_was_away(
    mosquitto: MosquittoProcess, mqtt_client_factory: MqttClientFactory
) -> None:
    count = 5000
    offline_hub_session(mqtt_client_factory)

    publish_all(mqtt_client_factory("device"), count)
    inbox = hub_comes_back(mqtt_client_factory)

    wait_until(lambda: len(inbox) >= count, timeout=60)
    wait_until_quiet(inbox, quiet_s=0.5)
    assert inbox.payloads == [str(n) for n in range(count)]  # all of them, once, in order
    assert "Outgoing messages are being dropped" not in mosquitto.log_text()


def test_debians_default_queue_would_drop_most_of_them_silently(
    tmp_path: Path, mqtt_client_factory: MqttClientFactory
) -> None:
    """The trap the project config avoids: same story, Debian's 1,000-message queue."""
    count = 5000
    with MosquittoProcess(
        tmp_path / "debian-default",
        overrides={"max_queued_messages": str(DEBIAN_DEFAULT_QUEUE)},
    ) as broker:
        hub = mqtt_client_factory(HUB_ID, connect=False)
        _connect(hub, broker, clean_start=False)
        subscribe(hub, "carehub/v1/+/+/event", qos=1)
        go_offline(hub)

        device = mqtt_client_factory("device", connect=False)
        _connect(device, broker)
        publish_all(device, count)  # every one acknowledged to the device
        go_offline(device)

        inbox = Inbox()
        back = mqtt_client_factory(HUB_ID, on_message=inbox.on_message, connect=False)
        _connect(back, broker, clean_start=False)
        wait_until_quiet(inbox)
        go_offline(back)

        assert len(inbox) < count, "Debian's queue limit no longer drops messages?"
        assert len(inbox) <= DEBIAN_DEFAULT_QUEUE + int(
            dict(BROKER_SETTINGS)["max_inflight_messages"]
        )
        assert "Outgoing messages are being dropped" in broker.log_text()


def test_queued_messages_survive_a_graceful_broker_restart(
    mosquitto: MosquittoProcess, mqtt_client_factory: MqttClientFactory
) -> None:
    count = 500
    offline_hub_session(mqtt_client_factory)
    device = mqtt_client_factory("device")
    publish_all(device, count)
    go_offline(device)

    mosquitto.restart()  # SIGTERM: the broker saves its database, then starts from it
    assert mosquitto.persistence_path.is_file()

    inbox = hub_comes_back(mqtt_client_factory)
    wait_until(lambda: len(inbox) >= count, timeout=30)
    wait_until_quiet(inbox, quiet_s=0.5)
    assert Counter(inbox.payloads) == Counter(str(n) for n in range(count))


def test_retained_device_status_survives_a_graceful_broker_restart(
    mosquitto: MosquittoProcess, mqtt_client_factory: MqttClientFactory
) -> None:
    status_topic = "carehub/v1/home-1/fall-sensor-1/status"
    device = mqtt_client_factory("device")
    device.publish(status_topic, '{"online": true}', qos=1, retain=True).wait_for_publish(10)
    go_offline(device)

    mosquitto.restart()

    inbox = Inbox()
    portal = mqtt_client_factory("late-subscriber", on_message=inbox.on_message)
    subscribe(portal, status_topic)
    wait_until(lambda: len(inbox) == 1, timeout=10)
    assert inbox.payloads == ['{"online": true}']


@pytest.mark.slow
def test_a_killed_broker_keeps_what_it_had_saved(
    mosquitto: MosquittoProcess, mqtt_client_factory: MqttClientFactory
) -> None:
    """SIGKILL loses only what arrived since the last autosave; wait one out, then kill."""
    count = 200
    offline_hub_session(mqtt_client_factory)
    device = mqtt_client_factory("device")
    publish_all(device, count)
    go_offline(device)
    threading.Event().wait(AUTOSAVE_INTERVAL_S + 1.5)

    mosquitto.kill()
    mosquitto.start()

    inbox = hub_comes_back(mqtt_client_factory)
    wait_until(lambda: len(inbox) >= count, timeout=30)
    assert set(inbox.payloads) == {str(n) for n in range(count)}


def test_the_project_config_is_what_the_broker_runs(mosquitto: MosquittoProcess) -> None:
    config = mosquitto.config_path.read_text()
    assert f"max_queued_messages {MAX_QUEUED_MESSAGES}\n" in config
    assert "persistence true\n" in config
    assert broker_reachable(mosquitto.host, mosquitto.port)
    log = mosquitto.log_text()
    assert f"Config loaded from {mosquitto.config_path}" in log
    assert "Error" not in log


def test_render_config_uses_the_chosen_port_data_dir_and_access_files(tmp_path: Path) -> None:
    text = render_config(
        18830,
        tmp_path / "data",
        bind="0.0.0.0",
        password_file=tmp_path / "passwd",
        acl_file=tmp_path / "acl",
    )
    lines = text.splitlines()
    assert "listener 18830 0.0.0.0" in lines
    assert f"persistence_location {(tmp_path / 'data').resolve()}/" in lines
    assert "allow_anonymous false" in lines
    assert f"password_file {(tmp_path / 'passwd').resolve()}" in lines
    assert f"acl_file {(tmp_path / 'acl').resolve()}" in lines
    assert "allow_anonymous true" not in lines


def test_render_config_refuses_unknown_overrides_and_bad_ports(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_queued_mesages"):
        render_config(1883, tmp_path, overrides={"max_queued_mesages": "10"})
    with pytest.raises(ValueError, match="port"):
        render_config(0, tmp_path)


def test_the_shipped_config_has_the_same_settings_as_the_rendered_one() -> None:
    shipped = _settings(SHIPPED_CONFIG.read_text())
    assert sorted(
        (key, value)
        for key, value in shipped
        if key not in {"user", "persistence_location", "listener", "allow_anonymous"}
    ) == sorted(BROKER_SETTINGS)
    assert ("max_queued_messages", "100000") in shipped
    assert ("listener", "1883 127.0.0.1") in shipped
    assert ("user", "mosquitto") in shipped
    assert ("allow_anonymous", "true") in shipped


def _settings(config_text: str) -> list[tuple[str, str]]:
    pairs = []
    for raw in config_text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            pairs.append((key, value.strip()))
    return pairs


def _connect(client: mqtt.Client, broker: MosquittoProcess, *, clean_start: bool = True) -> None:
    connect_client(
        client,
        broker.host,
        broker.port,
        clean_start=clean_start,
        session_expiry_s=None if clean_start else SESSION_EXPIRY_S,
    )
