"""``carehub-sim`` against a real Mosquitto, and its readable errors when there is no broker."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from typer.testing import CliRunner

from hub.broker import MosquittoProcess, free_port
from hub.clock import FakeClock
from simulators import cli
from tests.simulators.test_devices import Inbox, late_subscriber, on_topic, subscriber

__all__ = ["late_subscriber", "subscriber"]  # fixtures shared with test_devices

runner = CliRunner()


def sim(*args: str) -> Any:
    return runner.invoke(cli.app, list(args))


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    clock = FakeClock(datetime(2026, 1, 5, 13, 32, tzinfo=UTC))
    monkeypatch.setattr(cli, "clock", clock)
    return clock


def test_event_fall_reaches_a_subscriber(
    mosquitto: MosquittoProcess, subscriber: Inbox, frozen_clock: FakeClock
) -> None:
    subscriber.subscribe("carehub/v1/#")

    result = sim("event", "fall", "--home", "h1", "--device", "d1", "--port", str(mosquitto.port))

    assert result.exit_code == 0, result.output
    topic = "carehub/v1/h1/d1/event"
    received = subscriber.wait_for(on_topic(topic))
    # Default seq: milliseconds since 1970 on the clock, so that separate runs keep increasing.
    assert json.loads(received.payload) == {
        "type": "fall",
        "ts": "2026-01-05T13:32:00+00:00",
        "seq": 1_767_619_920_000,
    }
    assert f"published fall event: {topic} {received.payload.decode()}" in result.output
    status = subscriber.wait_for(on_topic("carehub/v1/h1/d1/status"))
    assert json.loads(status.payload) == {"online": True}


def test_event_options_shape_the_payload(
    mosquitto: MosquittoProcess, subscriber: Inbox, frozen_clock: FakeClock
) -> None:
    subscriber.subscribe("carehub/v1/#", "zigbee2mqtt/#")
    port = str(mosquitto.port)

    native = sim(
        "event", "door", "--home", "h1", "--device", "door1", "--closed", "--seq", "42",
        "--battery", "17", "--port", port,
    )  # fmt: skip
    z2m = sim(
        "event", "button", "--home", "h1", "--device", "pendant", "--protocol", "zigbee2mqtt",
        "--action", "cancel", "--port", port,
    )  # fmt: skip

    assert native.exit_code == 0, native.output
    assert z2m.exit_code == 0, z2m.output
    door = subscriber.wait_for(on_topic("carehub/v1/h1/door1/event"))
    assert json.loads(door.payload) == {
        "type": "door",
        "ts": "2026-01-05T13:32:00+00:00",
        "seq": 42,
        "open": False,
        "battery": 17,
    }
    assert subscriber.wait_for(on_topic("zigbee2mqtt/pendant")).payload == b'{"action":"cancel"}'


def test_status_offline_is_retained(
    mosquitto: MosquittoProcess, late_subscriber: Callable[..., Inbox]
) -> None:
    result = sim(
        "status", "--home", "h1", "--device", "d1", "--offline", "--port", str(mosquitto.port)
    )

    assert result.exit_code == 0, result.output
    topic = "carehub/v1/h1/d1/status"
    retained = late_subscriber(topic).wait_for(on_topic(topic))
    assert retained.retain and json.loads(retained.payload) == {"online": False}


def test_die_makes_the_broker_publish_the_will(
    mosquitto: MosquittoProcess, subscriber: Inbox
) -> None:
    topic = "zigbee2mqtt/kari-pendant/availability"
    subscriber.subscribe(topic)

    result = sim(
        "die", "--home", "kari", "--device", "kari-pendant", "--protocol", "zigbee2mqtt",
        "--port", str(mosquitto.port),
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert subscriber.wait_for(on_topic(topic, b"online")).retain is False
    assert subscriber.wait_for(on_topic(topic)).payload == b"offline"
    assert "last will" in result.output


def test_homes_runs_a_small_fleet(mosquitto: MosquittoProcess, subscriber: Inbox) -> None:
    subscriber.subscribe("carehub/v1/+/+/event", "zigbee2mqtt/+")

    result = sim(
        "homes", "--count", "2", "--rate", "600", "--seed", "4", "--duration", "0.5",
        "--heartbeat", "0", "--port", str(mosquitto.port),
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert "published (acknowledged)" in result.output
    subscriber.wait_for(lambda m: True)  # at ~10 events/s, 0.5 s all but surely sends one


@pytest.mark.parametrize(
    "args",
    [
        ["event", "fall", "--home", "h1", "--device", "d1"],
        ["status", "--home", "h1", "--device", "d1"],
        ["die", "--home", "h1", "--device", "d1"],
        ["homes", "--count", "1", "--duration", "1"],
    ],
)
def test_a_broker_that_is_down_is_a_readable_error(args: list[str]) -> None:
    port = free_port()

    result = sim(*args, "--port", str(port), "--timeout", "1")

    assert result.exit_code == 1
    assert f"error: cannot reach the MQTT broker at 127.0.0.1:{port}" in result.output
    assert "connection refused" in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_an_impossible_event_is_a_readable_error() -> None:
    result = sim(
        "event", "fall", "--home", "h1", "--device", "radar", "--protocol", "zigbee2mqtt",
        "--confidence", "0.8", "--port", str(free_port()),
    )  # fmt: skip

    assert result.exit_code == 1
    assert "error: Zigbee2MQTT fall radars report no confidence" in result.output
