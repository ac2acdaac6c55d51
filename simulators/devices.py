"""Virtual devices (state + payloads) and the MQTT publisher that speaks for them, will included."""

from __future__ import annotations

import logging
import secrets
import socket
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from types import TracebackType
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from devices.catalogue import info
from devices.events import EventKind
from hub.clock import Clock, SystemClock
from hub.storage.models import DeviceType, Protocol
from simulators import payloads
from simulators.payloads import AvailabilityFormat, ButtonAction, FallDownStatus, MqttMessage

logger = logging.getLogger(__name__)

QOS = 1


class UnsupportedEvent(ValueError):
    """The device's type cannot produce this event (e.g. a door contact asked to fall)."""


class PublisherError(RuntimeError):
    """Base class of the publisher's failures; the message is meant for a person."""


class BrokerUnavailable(PublisherError):
    """The broker could not be reached, or it refused the connection."""


class PublishError(PublisherError):
    """A message was not acknowledged (no PUBACK in time, refused, or not connected)."""


@dataclass(slots=True)
class VirtualDevice:
    """A simulated sensor: knows its topics, keeps its ``seq`` and battery, builds its payloads.

    ``identifier`` is the ``<device_id>`` of native topics or the Zigbee2MQTT ``<friendly_name>``.
    Events carry ``clock.now()`` rendered in ``tz`` (ISO 8601 with that zone).
    """

    identifier: str
    home_id: str
    type: DeviceType
    protocol: Protocol = Protocol.NATIVE
    battery: int | None = 100
    rssi: int | None = None  # native status only
    linkquality: int | None = None  # Zigbee2MQTT payloads only
    tamper: bool | None = None
    seq: int = 0  # the last seq used; the next native event carries seq + 1
    availability_format: AvailabilityFormat = "plain"
    room: str | None = None
    clock: Clock = field(default_factory=SystemClock)
    tz: tzinfo = UTC
    # The device's HMAC key (native only): its events then carry "sig" (docs/mqtt.md).
    hmac_key: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.type = DeviceType(self.type)
        self.protocol = Protocol(self.protocol)
        if self.hmac_key is not None and self.protocol is not Protocol.NATIVE:
            raise ValueError("only native devices sign payloads (the Zigbee2MQTT bridge cannot)")

    @property
    def is_native(self) -> bool:
        return self.protocol is Protocol.NATIVE

    @property
    def events(self) -> frozenset[EventKind]:
        """The kinds of event this device's type can report (from the catalogue)."""
        return info(self.type).events

    @property
    def status_topic(self) -> str:
        if self.is_native:
            return payloads.native_status_topic(self.home_id, self.identifier)
        return payloads.z2m_availability_topic(self.identifier)

    @property
    def event_topic(self) -> str:
        if self.is_native:
            return payloads.native_event_topic(self.home_id, self.identifier)
        return payloads.z2m_state_topic(self.identifier)

    # --- events ---------------------------------------------------------------------------------

    def fall(
        self, *, confidence: float | None = None, status: FallDownStatus = "fall"
    ) -> MqttMessage:
        """A fall. Native: optional ``confidence``. Zigbee2MQTT: ``fall_down_status``."""
        self._require(EventKind.FALL)
        if self.is_native:
            if status != "fall":
                raise UnsupportedEvent(f"native fall events have no {status!r} state")
            ts, seq = self._stamp()
            return self._signed(
                payloads.native_fall(
                    self.home_id,
                    self.identifier,
                    ts=ts,
                    seq=seq,
                    confidence=confidence,
                    battery=self.battery,
                    tamper=self.tamper,
                )
            )
        if confidence is not None:
            raise UnsupportedEvent("Zigbee2MQTT fall radars report no confidence")
        return payloads.z2m_fall(
            self.identifier,
            status=status,
            battery=self.battery,
            linkquality=self.linkquality,
            tamper=self.tamper,
        )

    def door(self, *, open: bool) -> MqttMessage:
        """The door opened (``open=True``) or closed."""
        self._require(EventKind.DOOR)
        if self.is_native:
            ts, seq = self._stamp()
            return self._signed(
                payloads.native_door(
                    self.home_id,
                    self.identifier,
                    open=open,
                    ts=ts,
                    seq=seq,
                    battery=self.battery,
                    tamper=self.tamper,
                )
            )
        return payloads.z2m_door(
            self.identifier,
            open=open,
            battery=self.battery,
            linkquality=self.linkquality,
            tamper=self.tamper,
        )

    def motion(self, *, detected: bool) -> MqttMessage:
        """Motion seen (``detected=True``) or the sensor went quiet again."""
        self._require(EventKind.MOTION)
        if self.is_native:
            ts, seq = self._stamp()
            return self._signed(
                payloads.native_motion(
                    self.home_id,
                    self.identifier,
                    motion=detected,
                    ts=ts,
                    seq=seq,
                    battery=self.battery,
                    tamper=self.tamper,
                )
            )
        return payloads.z2m_motion(
            self.identifier,
            occupancy=detected,
            battery=self.battery,
            linkquality=self.linkquality,
            tamper=self.tamper,
        )

    def button(self, *, action: ButtonAction = "press") -> MqttMessage:
        """The resident pressed the button, or cancelled a press."""
        self._require(EventKind.BUTTON)
        if self.is_native:
            ts, seq = self._stamp()
            return self._signed(
                payloads.native_button(
                    self.home_id,
                    self.identifier,
                    action=action,
                    ts=ts,
                    seq=seq,
                    battery=self.battery,
                    tamper=self.tamper,
                )
            )
        return payloads.z2m_button(
            self.identifier,
            action=action,
            battery=self.battery,
            linkquality=self.linkquality,
            tamper=self.tamper,
        )

    # --- status ---------------------------------------------------------------------------------

    def status(self, *, online: bool = True) -> MqttMessage:
        """Retained status: native ``{"online", "battery"?, "rssi"?}``; Z2M availability."""
        if self.is_native:
            if not online:
                return payloads.native_status(self.home_id, self.identifier, online=False)
            return payloads.native_status(
                self.home_id, self.identifier, online=True, battery=self.battery, rssi=self.rssi
            )
        return payloads.z2m_availability(
            self.identifier, online=online, fmt=self.availability_format
        )

    def will(self) -> MqttMessage:
        """The last will the broker publishes when this device vanishes: retained offline."""
        return self.status(online=False)

    def drain_battery(self, by: int = 1) -> int | None:
        """Lower the battery level (never below 0); returns the new level."""
        if self.battery is not None:
            self.battery = max(0, self.battery - by)
        return self.battery

    def _require(self, kind: EventKind) -> None:
        if kind not in self.events:
            can = ", ".join(sorted(self.events)) or "nothing"
            raise UnsupportedEvent(
                f"{self.identifier} is a {self.type.value} and cannot report {kind.value}"
                f" events (it reports: {can})"
            )

    def _signed(self, message: MqttMessage) -> MqttMessage:
        """Events of a device with a key are signed; its status and last will are not (the
        will is fixed at connect time, and the hub does not require signed statuses)."""
        return message if self.hmac_key is None else payloads.signed(message, self.hmac_key)

    def _stamp(self) -> tuple[datetime, int]:
        self.seq += 1
        return self.clock.now().astimezone(self.tz), self.seq


class DevicePublisher:
    """One MQTT v5 connection (paho-mqtt 2) speaking for one or more virtual devices.

    With ``will=True`` (only for a single device: MQTT allows one will per connection) the
    device's retained offline status is the connection's last will. With ``announce_online``
    each device's retained online status is published on every (re)connect. Events go out at
    QoS 1 and :meth:`publish` returns only after the broker's PUBACK.
    """

    def __init__(
        self,
        devices: VirtualDevice | Sequence[VirtualDevice],
        *,
        host: str = "127.0.0.1",
        port: int = 1883,
        client_id: str | None = None,
        will: bool = True,
        announce_online: bool = True,
        keepalive_s: int = 30,
        timeout_s: float = 5.0,
    ) -> None:
        self.devices: tuple[VirtualDevice, ...] = (
            (devices,) if isinstance(devices, VirtualDevice) else tuple(devices)
        )
        if not self.devices:
            raise ValueError("a publisher needs at least one device")
        if will and len(self.devices) > 1:
            raise ValueError("MQTT allows one last will per connection: use will=False if shared")
        self.host = host
        self.port = port
        self.timeout_s = timeout_s
        self.keepalive_s = keepalive_s
        self.announce_online = announce_online
        self.client_id = (
            client_id or f"carehub-sim-{self.devices[0].identifier}-{secrets.token_hex(4)}"
        )
        self.heartbeats_sent = 0

        self._client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self._client.connect_timeout = timeout_s
        self._client.reconnect_delay_set(min_delay=1, max_delay=10)
        if will:
            last_will = self.devices[0].will()
            self._client.will_set(last_will.topic, last_will.payload, qos=QOS, retain=True)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish

        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._connack = threading.Event()
        self._gone = threading.Event()
        self._dying = False
        self._refusal: str | None = None
        self._announced: list[mqtt.MQTTMessageInfo] = []
        self._failed_acks: dict[int, str] = {}
        self._heartbeat_stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def connect(self) -> None:
        """Connect, announce the devices online and wait for that to be acknowledged."""
        try:
            self._client.connect(self.host, self.port, keepalive=self.keepalive_s, clean_start=True)
        except (OSError, ValueError) as exc:
            raise BrokerUnavailable(
                f"cannot reach the MQTT broker at {self.host}:{self.port}: {_why(exc)}"
            ) from exc
        self._client.loop_start()
        if not self._connack.wait(self.timeout_s):
            self._abandon()
            raise BrokerUnavailable(
                f"the MQTT broker at {self.host}:{self.port} did not answer within"
                f" {self.timeout_s:g} s"
            )
        if self._refusal is not None:
            self._abandon()
            raise BrokerUnavailable(
                f"the MQTT broker at {self.host}:{self.port} refused the connection:"
                f" {self._refusal}"
            )
        with self._lock:
            announced, self._announced = self._announced, []
        for message_info in announced:
            self._wait(message_info, "online status")

    def publish(self, message: MqttMessage, *, timeout_s: float | None = None) -> None:
        """Publish at QoS 1 and wait for the PUBACK; raises :class:`PublishError` otherwise.

        A message that fails because the connection is down stays in paho's queue and may still
        be delivered after a reconnect (QoS 1 is at-least-once; the hub de-duplicates by seq).
        """
        message_info = self._client.publish(
            message.topic, message.payload, qos=QOS, retain=message.retain
        )
        self._wait(message_info, message.topic, timeout_s)

    def publish_status(self, *, online: bool = True) -> None:
        """Publish every device's retained status now (a heartbeat)."""
        for device in self.devices:
            self.publish(device.status(online=online))

    def start_heartbeat(self, interval_s: float) -> None:
        """Publish the devices' status every ``interval_s`` seconds from a background thread."""
        if interval_s <= 0:
            raise ValueError("the heartbeat interval must be positive")
        if self._heartbeat is not None:
            raise RuntimeError("the heartbeat is already running")
        self._heartbeat_stop.clear()
        self._heartbeat = threading.Thread(
            target=self._heartbeat_main,
            args=(interval_s,),
            name=f"heartbeat-{self.client_id}",
            daemon=True,
        )
        self._heartbeat.start()

    def stop_heartbeat(self) -> None:
        self._heartbeat_stop.set()
        thread, self._heartbeat = self._heartbeat, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(self.timeout_s + 1)

    def close(self, *, announce_offline: bool = False) -> None:
        """Disconnect cleanly (the broker discards the will); optionally say offline first."""
        self.stop_heartbeat()
        if self._dying:
            return
        if announce_offline and self.connected:
            try:
                self.publish_status(online=False)
            except PublishError as exc:
                logger.warning("%s: could not announce offline: %s", self.client_id, exc)
        self._client.disconnect()
        self._client.loop_stop()
        self._connected.clear()

    def die(self) -> None:
        """Vanish like a device losing power: the broker sees the TCP connection drop without an
        MQTT DISCONNECT and publishes the last will.

        How (paho-mqtt 2): ``shutdown()`` the client's own socket (``Client.socket()``), which
        sends a TCP FIN and nothing else. paho's network thread reads EOF and calls
        ``on_disconnect``; there, because we are dying, we call ``loop_stop()`` from inside the
        network thread, which only raises paho's terminate flag, so ``loop_forever`` exits instead
        of reconnecting (a reconnect would re-announce the device online). No private attributes.
        """
        self.stop_heartbeat()
        with self._lock:
            self._dying = True
        sock = self._client.socket()
        if not isinstance(sock, socket.socket):  # None, or a websocket wrapper we do not use
            self._client.loop_stop()
            raise PublisherError(f"{self.client_id} is not connected: nothing to drop")
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError as exc:  # already gone: the broker noticed on its own
            logger.debug("%s: shutdown failed: %s", self.client_id, exc)
        self._gone.wait(self.timeout_s)
        self._client.loop_stop()
        self._connected.clear()

    def __enter__(self) -> DevicePublisher:
        self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- internals ------------------------------------------------------------------------------

    def _wait(
        self, message_info: mqtt.MQTTMessageInfo, what: str, timeout_s: float | None = None
    ) -> None:
        timeout = self.timeout_s if timeout_s is None else timeout_s
        try:
            message_info.wait_for_publish(timeout)
        except (RuntimeError, ValueError) as exc:
            raise PublishError(f"could not publish {what}: {exc}") from exc
        if not message_info.is_published():
            raise PublishError(f"no PUBACK for {what} within {timeout:g} s")
        with self._lock:
            refusal = self._failed_acks.pop(message_info.mid, None)
        if refusal is not None:
            raise PublishError(f"the broker refused {what}: {refusal}")

    def _heartbeat_main(self, interval_s: float) -> None:
        while not self._heartbeat_stop.wait(interval_s):
            try:
                self.publish_status(online=True)
                self.heartbeats_sent += 1
            except PublishError as exc:
                logger.warning("%s: heartbeat not delivered: %s", self.client_id, exc)

    def _abandon(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: Any,
        reason_code: Any,
        properties: Any,
    ) -> None:
        if reason_code.is_failure:
            self._refusal = str(reason_code)
            self._connack.set()
            return
        announced: list[mqtt.MQTTMessageInfo] = []
        if self.announce_online:
            for device in self.devices:
                status = device.status(online=True)
                announced.append(
                    client.publish(status.topic, status.payload, qos=QOS, retain=status.retain)
                )
        with self._lock:
            self._announced = announced
        self._connected.set()
        self._connack.set()
        logger.debug("%s connected to %s:%s", self.client_id, self.host, self.port)

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: Any,
        reason_code: Any,
        properties: Any,
    ) -> None:
        self._connected.clear()
        with self._lock:
            dying = self._dying
        if dying:
            # Inside the network thread loop_stop() does not join: it only stops loop_forever
            # from reconnecting.
            client.loop_stop()
            self._gone.set()
        else:
            logger.info("%s disconnected (%s)", self.client_id, reason_code)

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_code: Any,
        properties: Any,
    ) -> None:
        if reason_code.is_failure:
            with self._lock:
                self._failed_acks[mid] = str(reason_code)


def connect_all(publishers: Iterable[DevicePublisher]) -> None:
    """Connect several publishers; on the first failure close those already connected."""
    done: list[DevicePublisher] = []
    try:
        for publisher in publishers:
            publisher.connect()
            done.append(publisher)
    except BaseException:
        for publisher in done:
            publisher.close()
        raise


def _why(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is Mosquitto running?)"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, socket.gaierror):
        return f"unknown host ({exc.strerror})"
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
