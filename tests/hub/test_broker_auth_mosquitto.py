"""Per-device logins and the ACL in a real Mosquitto: each device speaks only for itself.

The files come from the database through ``sync_broker_auth``, exactly as `carehub broker sync`
writes them; the broker is started with them (``render_config(password_file=, acl_file=)``).
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from sqlalchemy.orm import Session, sessionmaker

from hub import devices_admin as admin
from hub.broker import MosquittoProcess, find_mosquitto
from hub.broker_auth import BrokerAuthPaths, sync_broker_auth
from hub.config import MqttSettings
from hub.storage.db import make_engine, make_sessionmaker, transaction
from hub.storage.models import DeviceType, Protocol
from tests.factories import T0, add_home
from tests.mqtt_helpers import wait_until

pytestmark = pytest.mark.broker

HUB = MqttSettings(username="carehub-hub", password="hub-secret")


@dataclass
class Inbox:
    """What a subscriber received: (topic, payload) in order."""

    messages: list[tuple[str, bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload)))

    def topics(self) -> list[str]:
        with self.lock:
            return [t for t, _ in self.messages]


class Site:
    """A database with two homes' devices, the broker's files from it, and the broker."""

    def __init__(self, tmp_path: Path, url: str) -> None:
        self.engine = make_engine(url)
        self.factory: sessionmaker[Session] = make_sessionmaker(self.engine)
        add_home(self.factory, "h1", devices=())
        add_home(self.factory, "h2", devices=())
        self.passwords: dict[str, str] = {}
        for device_id, home in (("d1", "h1"), ("d2", "h2"), ("d3", "h1")):
            with transaction(self.factory) as session:
                reg = admin.register(
                    session,
                    device_id=device_id,
                    type=DeviceType.ALARM_BUTTON,
                    protocol=Protocol.NATIVE,
                    home_id=home,
                    room="Stue",
                    now=T0,
                    actor="installer",
                )
                assert reg.mqtt_password is not None
                self.passwords[device_id] = reg.mqtt_password
        self.paths = BrokerAuthPaths(tmp_path / "carehub.passwd", tmp_path / "carehub.acl")
        self.sync()
        self.broker = MosquittoProcess(
            tmp_path / "mosquitto",
            password_file=self.paths.password_file,
            acl_file=self.paths.acl_file,
        )
        self.clients: list[mqtt.Client] = []

    def sync(self, reload: MosquittoProcess | None = None) -> None:
        with transaction(self.factory) as session:
            sync_broker_auth(session, self.paths, reload, mqtt=HUB)

    def connect(
        self, username: str | None, password: str | None, inbox: Inbox | None = None
    ) -> tuple[mqtt.Client, str]:
        """A client logging in; returns it and the CONNACK's reason ("Success" when accepted)."""
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"{username}-{uuid.uuid4().hex[:6]}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        if username is not None:
            client.username_pw_set(username, password)
        if inbox is not None:
            client.on_message = inbox.on_message
        answered = threading.Event()
        reason: list[str] = []

        def on_connect(_c: mqtt.Client, _u: Any, _f: Any, code: Any, _p: Any) -> None:
            reason.append(str(code))
            answered.set()

        client.on_connect = on_connect
        client.reconnect_delay_set(60, 60)  # a refused client must not retry during the test
        client.connect(self.broker.host, self.broker.port)
        client.loop_start()
        assert answered.wait(10), "no CONNACK"
        self.clients.append(client)
        return client, reason[0]

    def subscribe(self, client: mqtt.Client, topic: str) -> None:
        done = threading.Event()
        client.on_subscribe = lambda *a: done.set()
        client.subscribe(topic, qos=1)
        assert done.wait(10)

    def close(self) -> None:
        for client in self.clients:
            client.disconnect()
            client.loop_stop()
        self.broker.stop()
        self.engine.dispose()


@pytest.fixture
def site(tmp_path: Path, sqlite_url: str) -> Iterator[Site]:
    if find_mosquitto() is None:
        pytest.fail("Mosquitto is not installed: run `make services`", pytrace=False)
    site = Site(tmp_path, sqlite_url)
    site.broker.start()
    try:
        yield site
    finally:
        site.close()


def _publish(client: mqtt.Client, topic: str, body: dict[str, Any]) -> None:
    info = client.publish(topic, json.dumps(body), qos=1)
    info.wait_for_publish(10)


def test_a_device_publishing_on_another_devices_topic_never_reaches_the_hub(site: Site) -> None:
    inbox = Inbox()
    hub, reason = site.connect("carehub-hub", "hub-secret", inbox)
    assert reason == "Success"
    site.subscribe(hub, "carehub/v1/+/+/+")
    intruder, reason = site.connect("d2", site.passwords["d2"])
    assert reason == "Success"
    event = {"type": "button", "ts": T0.isoformat(), "seq": 1, "action": "press"}
    # forged: d2 claims to be d1 in h1, then writes its own event on the same connection
    _publish(intruder, "carehub/v1/h1/d1/event", event)
    _publish(intruder, "carehub/v1/h1/d2/event", event)  # its own id, a foreign home
    _publish(intruder, "carehub/v1/h2/d2/event", event)
    # MQTT keeps one publisher's order: once its own event is in, the forged ones would be too
    wait_until(lambda: "carehub/v1/h2/d2/event" in inbox.topics(), timeout=10)
    assert inbox.topics() == ["carehub/v1/h2/d2/event"]


def test_the_hub_receives_a_devices_own_event_and_the_device_reads_its_homes_feedback(
    site: Site,
) -> None:
    hub_inbox, d1_inbox, d2_inbox = Inbox(), Inbox(), Inbox()
    hub, _ = site.connect("carehub-hub", "hub-secret", hub_inbox)
    site.subscribe(hub, "carehub/v1/+/+/+")
    d1, _ = site.connect("d1", site.passwords["d1"], d1_inbox)
    d2, _ = site.connect("d2", site.passwords["d2"], d2_inbox)
    site.subscribe(d1, "carehub/v1/h1/feedback")
    site.subscribe(d2, "carehub/v1/h1/feedback")  # another home's feedback: not readable
    site.subscribe(d2, "carehub/v1/h2/feedback")
    _publish(d1, "carehub/v1/h1/d1/event", {"type": "button", "ts": T0.isoformat(), "seq": 1})
    wait_until(lambda: hub_inbox.topics() == ["carehub/v1/h1/d1/event"], timeout=10)
    _publish(hub, "carehub/v1/h1/feedback", {"state": "open"})
    _publish(hub, "carehub/v1/h2/feedback", {"state": "none"})
    wait_until(lambda: d1_inbox.topics() == ["carehub/v1/h1/feedback"], timeout=10)
    wait_until(lambda: d2_inbox.topics() == ["carehub/v1/h2/feedback"], timeout=10)
    # a device cannot write feedback, nor read other devices' events
    site.subscribe(d1, "carehub/v1/+/+/event")
    _publish(d1, "carehub/v1/h1/feedback", {"state": "forged"})
    _publish(hub, "carehub/v1/h2/feedback", {"state": "marker"})
    wait_until(lambda: len(d2_inbox.topics()) == 2, timeout=10)
    assert d1_inbox.topics() == ["carehub/v1/h1/feedback"]


def test_a_wrong_password_an_unknown_user_and_anonymous_clients_are_refused(site: Site) -> None:
    assert site.connect("d1", "wrong")[1] == "Not authorized"
    assert site.connect("nobody", "x")[1] == "Not authorized"
    assert site.connect(None, None)[1] == "Not authorized"
    assert site.connect("d1", site.passwords["d1"])[1] == "Success"


def test_a_retired_device_is_refused_once_the_files_are_synced_and_the_broker_reloaded(
    site: Site,
) -> None:
    connected, reason = site.connect("d3", site.passwords["d3"])
    assert reason == "Success"
    with transaction(site.factory) as session:
        admin.retire(session, "d3", now=T0, actor="installer", reason="lost")
    site.sync(reload=site.broker)
    # Mosquitto re-checks who is connected when it reloads: the retired device is dropped too
    wait_until(lambda: not connected.is_connected(), timeout=10)
    wait_until(lambda: site.connect("d3", site.passwords["d3"])[1] == "Not authorized", 10)
    # the others keep their logins
    assert site.connect("d1", site.passwords["d1"])[1] == "Success"
    assert "d3:" not in site.paths.password_file.read_text()
