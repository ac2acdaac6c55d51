"""The MQTT adapter of ingest: a persistent MQTT 5 session, batching, and ack-after-commit.

paho's network thread only queues messages. One worker thread takes them in batches (up to
``batch_max_messages`` or ``batch_max_wait_ms`` after the first), falls and button actions first
(``hub.ingest.order``, ADR 18), lets ``IngestProcessor`` commit them, and only then sends the
PUBACKs, in arrival order. A process killed at any line leaves the unacknowledged messages with
the broker, which redelivers them to the same session.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from devices.events import DecodeResult
from hub import metrics
from hub.clock import Clock, SystemClock
from hub.config import Settings
from hub.ingest.order import Ordering, next_batch, ordering
from hub.ingest.pipeline import BatchOutcome, InboundMessage, IngestProcessor

logger = logging.getLogger(__name__)

# Batches in a row that may put urgent messages ahead of older ones; then the oldest go (ADR 18).
URGENT_TURNS = 3


def subscriptions(settings: Settings) -> list[str]:
    """Topic filters of the hub: native events and status (three levels), and Zigbee2MQTT."""
    prefix = settings.mqtt.topic_prefix
    return [f"{prefix}/+/+/+", f"{settings.mqtt.zigbee2mqtt_prefix}/#"]


@dataclass(slots=True)
class _Held:
    """A message the worker has taken from the queue, until it is acknowledged."""

    message: InboundMessage
    decoded: DecodeResult
    order: Ordering
    committed: bool = False


class IngestService:
    """Runs the hub's MQTT session and the batching worker."""

    def __init__(
        self,
        settings: Settings,
        processor: IngestProcessor,
        clock: Clock | None = None,
    ) -> None:
        self._settings = settings
        self._processor = processor
        self._clock = clock or SystemClock()
        # Batching waits and latency are machine time, not domain time: always the real clock.
        self._timer = SystemClock()
        self._queue: queue.Queue[InboundMessage] = queue.Queue()
        self._stop = threading.Event()
        self._connected = threading.Event()  # connected and subscribed: ready
        self._refused = False  # the broker refused a subscription (its ACL)
        self._worker: threading.Thread | None = None
        # the worker's own: taken from the queue and not committed yet (arrival order), and
        # taken and not acknowledged yet (arrival order; PUBACKs leave in this order)
        self._pending: list[_Held] = []
        self._unacked: deque[_Held] = deque()
        self._passed_in_a_row = 0  # batches in a row that put urgent messages ahead of older ones
        self._client = self._make_client()
        self.batches = 0
        self.busy_s = 0.0  # time inside committed batches (``carehub_ingest_busy_seconds_total``)
        self.last_error: str | None = None

    # -- MQTT -----------------------------------------------------------------------------------
    def _make_client(self) -> mqtt.Client:
        cfg = self._settings.mqtt
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=cfg.client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
            manual_ack=True,
        )
        if cfg.username:
            client.username_pw_set(cfg.username, cfg.password)
        client.reconnect_delay_set(min_delay=1, max_delay=10)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    def _on_connect(
        self, client: mqtt.Client, _userdata: Any, flags: Any, reason: Any, _props: Any
    ) -> None:
        if reason.is_failure:
            logger.error("MQTT connection refused: %s", reason)
            return
        logger.info(
            "MQTT connected to %s:%s (session present: %s)",
            self._settings.mqtt.host,
            self._settings.mqtt.port,
            flags.session_present,
        )
        self._refused = False
        client.subscribe([(topic, 1) for topic in subscriptions(self._settings)])
        metrics.MQTT_CONNECTED.set(1)
        # ready (``wait_connected``) when the broker has granted the subscriptions: a message
        # published before that would not be routed to this session the first time it connects

    def _on_subscribe(
        self, _client: mqtt.Client, _userdata: Any, _mid: int, reason_codes: Any, _props: Any
    ) -> None:
        refused = [str(code) for code in reason_codes if code.is_failure]
        if refused:
            self._refused = True
            logger.error(
                "MQTT subscription refused (%s): the hub is not ready; check the broker's "
                "ACL for %s",
                ", ".join(refused),
                ", ".join(subscriptions(self._settings)),
            )
            return
        logger.info("MQTT subscriptions granted: the hub is ready")
        self._connected.set()

    def _on_disconnect(
        self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        self._connected.clear()
        metrics.MQTT_CONNECTED.set(0)
        if not self._stop.is_set():
            logger.warning("MQTT disconnected (%s); paho reconnects", reason)

    def _on_message(self, _client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self._queue.put(
            InboundMessage(
                topic=msg.topic,
                payload=bytes(msg.payload),
                received_at=self._clock.now(),
                mid=msg.mid,
                qos=msg.qos,
                dup=bool(msg.dup),
                received_mono=self._timer.monotonic(),
            )
        )
        metrics.INGEST_QUEUE.set(self.backlog())

    def backlog(self) -> int:
        """Messages received and not committed yet."""
        return self._queue.qsize() + len(self._pending)

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        """Connect (persistent session) and start the worker; returns at once."""
        cfg = self._settings.mqtt
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = cfg.session_expiry_s
        props.ReceiveMaximum = cfg.receive_maximum
        self._worker = threading.Thread(target=self._run_worker, name="ingest-worker", daemon=True)
        self._worker.start()
        self._client.connect_async(
            cfg.host, cfg.port, keepalive=cfg.keepalive_s, clean_start=False, properties=props
        )
        self._client.loop_start()

    def wait_connected(self, timeout: float) -> bool:
        """True once connected and subscribed (the broker granted every subscription)."""
        return self._connected.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the batch in hand, then disconnect; uncommitted messages stay with the broker."""
        self._stop.set()
        if self._worker is not None:
            self._worker.join(timeout)
        self._client.disconnect()
        self._client.loop_stop()
        metrics.MQTT_CONNECTED.set(0)

    def publish(self, topic: str, payload: bytes, retain: bool = True) -> None:
        """Publish from the hub's own session (QoS 1); paho queues it while disconnected."""
        self._client.publish(topic, payload, qos=1, retain=retain)

    def status(self) -> str:
        if self._connected.is_set():
            return "connected"
        return "subscription refused" if self._refused else "disconnected"

    # -- worker ---------------------------------------------------------------------------------
    def _take(self, message: InboundMessage) -> _Held:
        """Move a message from the queue into the worker's hands (decoded, classified)."""
        decoded = self._processor.decode(message)
        held = _Held(message, decoded, ordering(decoded))
        self._pending.append(held)
        self._unacked.append(held)
        return held

    def _next_batch(self) -> list[_Held]:
        """The messages to commit next: the oldest, or urgent ones first (``order.next_batch``),
        but not more than ``URGENT_TURNS`` batches in a row ahead of older messages.

        An idle worker waits up to ``batch_max_wait_ms`` after the first message for more to
        batch with it, unless an urgent one is among them.
        """
        cfg = self._settings.ingest
        idle = not self._pending
        if idle:
            try:
                self._take(self._queue.get(timeout=0.2))
            except queue.Empty:
                return []
        deadline = self._timer.monotonic() + cfg.batch_max_wait_ms / 1000.0
        # what has arrived meanwhile (bounded: the broker has at most receive_maximum in flight)
        room = max(cfg.batch_max_messages, self._settings.mqtt.receive_maximum)
        while len(self._pending) < room:
            try:
                self._take(self._queue.get_nowait())
            except queue.Empty:
                break
        urgent = any(held.order.urgent for held in self._pending)
        while idle and not urgent and len(self._pending) < cfg.batch_max_messages:
            remaining = deadline - self._timer.monotonic()
            if remaining <= 0:
                break
            try:
                urgent = self._take(self._queue.get(timeout=remaining)).order.urgent
            except queue.Empty:
                break
        if self._passed_in_a_row >= URGENT_TURNS:
            # now the oldest go, so a stream of urgent messages (a button pressed again and
            # again) cannot hold other homes back for good
            picked = list(range(min(cfg.batch_max_messages, len(self._pending))))
        else:
            picked = next_batch([held.order for held in self._pending], cfg.batch_max_messages)
        passed = bool(picked) and picked[-1] != len(picked) - 1  # ascending: a gap = passed
        self._passed_in_a_row = self._passed_in_a_row + 1 if passed else 0
        batch = [self._pending[k] for k in picked]
        if len(picked) == len(self._pending):
            self._pending = []
        else:
            chosen = set(picked)
            self._pending = [h for k, h in enumerate(self._pending) if k not in chosen]
        return batch

    def _run_worker(self) -> None:
        backoff = 0.1
        batch: list[_Held] = []
        while not self._stop.is_set():
            if not batch:
                batch = self._next_batch()
                if not batch:
                    continue
            started = self._timer.monotonic()
            try:
                outcome = self._processor.process(
                    [held.message for held in batch], [held.decoded for held in batch]
                )
            except Exception as exc:  # database down: keep the batch, ack nothing, retry
                metrics.BATCH_FAILURES.inc()
                self.last_error = f"{type(exc).__name__}: {exc}"
                logger.warning("ingest batch not committed (%s); retrying in %.1fs", exc, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self._settings.ingest.retry_backoff_max_s)
                continue
            backoff = 0.1
            busy = self._timer.monotonic() - started
            self.busy_s += busy
            metrics.INGEST_BUSY.inc(busy)
            self._committed(batch, outcome)
            batch = []

    def _committed(self, batch: Sequence[_Held], outcome: BatchOutcome) -> None:
        """Count a committed batch and send the PUBACKs now due.

        PUBACKs go out in the order the messages arrived (MQTT 5, 4.6.0-2): a message committed
        ahead of older ones (urgent first) is acknowledged with the last of them. Until then a
        restart makes the broker send it again, and it is absorbed as a duplicate.
        """
        now = self._timer.monotonic()
        for held in batch:
            held.committed = True
            metrics.INGEST_LATENCY.observe(max(0.0, now - held.message.received_mono))
        while self._unacked and self._unacked[0].committed:
            message = self._unacked.popleft().message
            if message.qos > 0:
                self._client.ack(message.mid, message.qos)
        self.batches += 1
        metrics.BATCH_COMMITS.inc()
        metrics.BATCH_SIZE.observe(len(batch))
        metrics.INGEST_QUEUE.set(self.backlog())
        logger.debug(
            "batch of %d: %d stored, %d duplicates, %d rejected, %d discovered",
            len(batch),
            len(outcome.stored),
            outcome.duplicates,
            outcome.rejected,
            outcome.discovered,
        )
