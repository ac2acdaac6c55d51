"""Signed simulated devices: the hub accepts what they sign and refuses tampering and replays.

A device registered with ``--hmac`` (hub/devices_admin.py) publishes through a real Mosquitto
with the simulator's ``DevicePublisher``; the hub's ingest (real codec, real database) decides.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from devices.signing import canonical_json, decode_key, encode_key, signature
from hub import devices_admin as admin
from hub.broker import MosquittoProcess
from hub.clock import FakeClock
from hub.config import DatabaseSettings, MqttSettings, Settings
from hub.runtime import HubRuntime
from hub.storage.models import DeviceType, Protocol, RejectedMessage, SensorEvent
from simulators import cli as sim_cli
from simulators.devices import DevicePublisher, VirtualDevice
from simulators.payloads import MqttMessage
from tests.factories import add_home
from tests.mqtt_helpers import wait_until
from tests.providers import RecordingProvider

pytestmark = pytest.mark.broker

T0 = datetime(2026, 1, 5, 13, 32, tzinfo=UTC)
HOME = "h1"
BUTTON = "btn-signed"


@pytest.fixture
def hub(mosquitto: MosquittoProcess, db_url: str) -> Iterator[HubRuntime]:
    settings = Settings(
        mqtt=MqttSettings(host=mosquitto.host, port=mosquitto.port, client_id="carehub-signing"),
        database=DatabaseSettings(url=db_url),
    )
    runtime = HubRuntime(settings, provider=RecordingProvider())
    add_home(runtime.session_factory, HOME, devices=())
    runtime.start()
    assert runtime.ingest.wait_connected(10)
    yield runtime
    runtime.stop()


@pytest.fixture
def key(hub: HubRuntime) -> bytes:
    """Register the button with a signing key, as an installer would; the key as printed."""
    with hub.session_factory() as session, session.begin():
        registration = admin.register(
            session,
            device_id=BUTTON,
            type=DeviceType.ALARM_BUTTON,
            protocol=Protocol.NATIVE,
            home_id=HOME,
            room="Stue",
            hmac=True,
            now=T0,
            actor="ingrid",
        )
    assert registration.hmac_key is not None
    return decode_key(registration.hmac_key)


def _button(key: bytes | None, seq: int = 0) -> VirtualDevice:
    return VirtualDevice(
        BUTTON, HOME, DeviceType.ALARM_BUTTON, seq=seq, clock=FakeClock(T0), hmac_key=key
    )


def _stored_seqs(hub: HubRuntime) -> list[int | None]:
    with hub.session_factory() as session:
        return list(
            session.scalars(
                select(SensorEvent.seq)
                .where(SensorEvent.device_id == BUTTON, SensorEvent.kind == "button")
                .order_by(SensorEvent.id)
            )
        )


def _rejections(hub: HubRuntime) -> list[str]:
    with hub.session_factory() as session:
        return list(
            session.scalars(select(RejectedMessage.reason_code).order_by(RejectedMessage.id))
        )


def test_a_signed_press_is_accepted_and_a_tampered_and_a_replayed_one_are_refused(
    hub: HubRuntime, key: bytes, mosquitto: MosquittoProcess
) -> None:
    device = _button(key)
    with DevicePublisher(
        device, host=mosquitto.host, port=mosquitto.port, announce_online=False
    ) as publisher:
        first = device.button(action="press")
        body = json.loads(first.payload)
        assert body["seq"] == 1 and set(body) >= {"sig", "ts", "type", "action"}
        assert body["sig"] == signature(key, canonical_json(body))
        publisher.publish(first)
        wait_until(lambda: _stored_seqs(hub) == [1], timeout=10)

        # Someone on the way turns the press into a cancel, keeping the signature.
        second = device.button(action="press")
        forged = json.loads(second.payload)
        forged["action"] = "cancel"
        publisher.publish(MqttMessage(second.topic, json.dumps(forged).encode()))
        wait_until(lambda: _rejections(hub) == ["bad_signature"], timeout=10)

        # The genuine second press arrives; then an old captured press (seq 1, another time)
        # is sent again, which the device's rising seq gives away.
        publisher.publish(second)
        wait_until(lambda: _stored_seqs(hub) == [1, 2], timeout=10)
        old = _button(key, seq=0)
        old.clock = FakeClock(T0.replace(minute=40))
        publisher.publish(old.button(action="press"))
        wait_until(lambda: _rejections(hub) == ["bad_signature", "replayed"], timeout=10)

    assert _stored_seqs(hub) == [1, 2]
    with hub.session_factory() as session:
        reasons = list(session.scalars(select(RejectedMessage.reason).order_by(RejectedMessage.id)))
    assert "last accepted seq 2" in reasons[1]


def test_an_unsigned_event_from_a_signing_device_is_refused(
    hub: HubRuntime, key: bytes, mosquitto: MosquittoProcess
) -> None:
    device = _button(None)  # the simulator without the key: what an impostor would send
    with DevicePublisher(
        device, host=mosquitto.host, port=mosquitto.port, announce_online=False
    ) as publisher:
        publisher.publish(device.button(action="press"))
        wait_until(lambda: _rejections(hub) == ["bad_signature"], timeout=10)
    assert _stored_seqs(hub) == []
    assert key  # the registered device does have a key


def test_carehub_sim_event_signs_with_the_key_the_hub_printed(
    hub: HubRuntime, key: bytes, mosquitto: MosquittoProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sim_cli, "clock", FakeClock(T0))
    printed = encode_key(key)  # as `carehub device register --hmac` prints it
    args = ["event", "button", "--home", HOME, "--device", BUTTON]
    args += ["--host", mosquitto.host, "--port", str(mosquitto.port)]
    runner = CliRunner()

    signed = runner.invoke(sim_cli.app, [*args, "--seq", "5", "--hmac-key", printed])
    assert signed.exit_code == 0, signed.output
    wait_until(lambda: _stored_seqs(hub) == [5], timeout=10)

    replay = runner.invoke(sim_cli.app, [*args, "--seq", "4", "--hmac-key", printed])
    assert replay.exit_code == 0, replay.output  # the broker took it; the hub refuses it
    wait_until(lambda: _rejections(hub) == ["replayed"], timeout=10)

    bad = runner.invoke(sim_cli.app, [*args, "--hmac-key", "not base64!"])
    assert bad.exit_code == 1 and "base64" in bad.output
    assert _stored_seqs(hub) == [5]
