"""Test helpers: a QoS 1 publisher that waits for PUBACK, and polling until a condition holds."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from hub.clock import SystemClock

_clock = SystemClock()


class Publisher:
    """A device-side MQTT client that publishes at QoS 1 and waits for the broker's PUBACK."""

    def __init__(self, host: str, port: int, client_id: str = "test-publisher") -> None:
        self._connected = threading.Event()
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self.client.on_connect = lambda *a: self._connected.set()
        self.client.max_inflight_messages_set(100)
        self.client.connect(host, port)
        self.client.loop_start()
        if not self._connected.wait(10):
            raise RuntimeError("publisher could not connect")

    def publish(
        self, topic: str, payload: bytes | str | dict[str, Any], retain: bool = False
    ) -> None:
        if isinstance(payload, dict):
            payload = json.dumps(payload)
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(10)
        if not info.is_published():
            raise RuntimeError(f"no PUBACK for {topic}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def wait_until(
    condition: Callable[[], bool], timeout: float = 15.0, interval: float = 0.05
) -> None:
    """Poll ``condition`` until it holds; fail the test with AssertionError after ``timeout``."""
    deadline = _clock.monotonic() + timeout
    stop = threading.Event()
    while not condition():
        if _clock.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        stop.wait(interval)
