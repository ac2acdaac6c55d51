"""The ingest core: a batch of MQTT messages becomes one transaction of stored effects.

``plan_batch`` is pure (decoded messages + registered devices -> rows to write);
``IngestProcessor`` runs decode -> plan -> write -> commit and isolates a poison message.

A device with an HMAC key must sign its events (``sig``) and raise ``seq`` with every one.
Order of the checks for such a device: signature, then de-duplication, then replay. A message
that is already stored (a QoS 1 redelivery after a crash, or an exact replay while the original
is kept) is a duplicate, absorbed as for any device; only a signed event with a seq not above
the last accepted one that is *not* stored is refused as ``replayed`` (docs/installer.md).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from devices import signing
from devices.codecs import decode
from devices.events import (
    Decoded,
    DecodeResult,
    DeviceRef,
    Ignored,
    Rejected,
    RejectReason,
    SensorEventMsg,
    StatusMsg,
)
from hub import metrics
from hub.config import Settings
from hub.ingest import store
from hub.ingest.store import KnownDevice, StoredEvent
from hub.storage.models import Protocol as DeviceProtocol

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """An MQTT message as received, before anything is decided about it."""

    topic: str
    payload: bytes
    received_at: datetime
    mid: int = 0
    qos: int = 1
    dup: bool = False
    received_mono: float = 0.0


@dataclass(frozen=True, slots=True)
class StatusChange:
    """A device's online state changed (status message or last will)."""

    device_id: str
    home_id: str
    online: bool
    at: datetime


@dataclass(slots=True)
class BatchPlan:
    """Everything one batch will write, decided without touching the database."""

    events: list[dict[str, Any]] = field(default_factory=list)
    device_changes: dict[str, dict[str, Any]] = field(default_factory=dict)
    status_changes: list[StatusChange] = field(default_factory=list)
    discovered: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    ignored: int = 0
    duplicates_in_batch: int = 0


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """What a committed batch did."""

    stored: list[StoredEvent]
    status_changes: list[StatusChange]
    duplicates: int
    rejected: int
    discovered: int
    ignored: int


class IngestSink(Protocol):
    """A plug-in that acts on newly stored events inside the ingest transaction (e.g. rules)."""

    def handle(self, session: Session, outcome: BatchOutcome) -> None:
        """Runs inside the batch's transaction; what it writes commits with the events."""
        ...

    def after_commit(self, info: dict[str, Any]) -> None:
        """Runs after the commit with the session's ``info`` (for side effects such as MQTT)."""
        ...


def dedup_key(msg: SensorEventMsg) -> str | None:
    """The key under which an event is stored once per device (see docs/mqtt.md)."""
    if msg.seq is not None and msg.ts is not None:
        return f"{msg.seq}@{msg.ts.isoformat()}"
    if msg.last_seen is not None:
        # one Zigbee2MQTT message can carry several events (a radar's fall and occupancy)
        return f"z2m@{msg.kind.value}@{msg.last_seen}"[:96]
    return None


def _excerpt(payload: bytes, limit: int) -> str:
    text = payload[:limit].decode("utf-8", errors="replace")
    return text + ("…" if len(payload) > limit else "")


def _reject_row(
    msg: InboundMessage, code: RejectReason, reason: str, excerpt_bytes: int
) -> dict[str, Any]:
    return {
        "received_at": msg.received_at,
        "topic": msg.topic[:256],
        "reason_code": code.value,
        "reason": reason,
        "payload_size": len(msg.payload),
        "payload_excerpt": _excerpt(msg.payload, excerpt_bytes),
    }


def _signature_problem(device: KnownDevice, item: SensorEventMsg | StatusMsg) -> str | None:
    """Why a message of a device with an HMAC key fails its signature (None: it passes).

    Events must be signed; a status (also the last will, which cannot carry a fresh seq) is
    checked when it carries a ``sig``.
    """
    assert device.hmac_key is not None
    sig = item.signature
    if sig is None:
        if isinstance(item, StatusMsg):
            return None
        return f'device {device.id} signs its payloads, but this event has no "sig"'
    if sig.body is None or not signing.verify(device.hmac_key, sig.body, sig.sig):
        return f'the "sig" of this message does not match device {device.id}\'s key'
    return None


def replay_candidates(
    results: Sequence[DecodeResult], by_id: dict[str, KnownDevice]
) -> set[tuple[str, str]]:
    """(device, dedup key) of signed devices' events whose seq is not above the last accepted.

    Whether each is stored already decides duplicate or replay (``store.stored_event_keys``).
    """
    out: set[tuple[str, str]] = set()
    for result in results:
        if not isinstance(result, Decoded):
            continue
        for item in result.messages:
            if not isinstance(item, SensorEventMsg) or item.device.protocol != "native":
                continue
            device = by_id.get(item.device.identifier)
            if device is None or device.hmac_key is None or device.last_seq is None:
                continue
            key = dedup_key(item)
            if item.seq is not None and key is not None and item.seq <= device.last_seq:
                out.add((device.id, key))
    return out


def _resolve(
    ref: DeviceRef, by_id: dict[str, KnownDevice], by_name: dict[str, KnownDevice]
) -> KnownDevice | None:
    if ref.protocol == "native":
        return by_id.get(ref.identifier)
    return by_name.get(ref.identifier)


def plan_batch(
    messages: Sequence[InboundMessage],
    results: Sequence[DecodeResult],
    by_id: dict[str, KnownDevice],
    by_name: dict[str, KnownDevice],
    *,
    excerpt_bytes: int = 512,
    stored_keys: frozenset[tuple[str, str]] = frozenset(),
) -> BatchPlan:
    """Decide the rows a batch writes. Pure: no database, no clock.

    ``stored_keys``: the (device, dedup key) pairs of ``replay_candidates`` already stored.
    """
    plan = BatchPlan()
    seen_keys: set[tuple[str, str]] = set()
    # the last accepted seq of signed devices, moved on by this batch's accepted events
    signed_seq: dict[str, int | None] = {}
    online_now: dict[str, bool | None] = {
        d.id: d.online for d in (*by_id.values(), *by_name.values())
    }
    for msg, result in zip(messages, results, strict=True):
        if isinstance(result, Ignored):
            plan.ignored += 1
            continue
        if isinstance(result, Rejected):
            plan.rejected.append(_reject_row(msg, result.code, result.reason, excerpt_bytes))
            continue
        assert isinstance(result, Decoded)
        for item in result.messages:
            ref = item.device
            device = _resolve(ref, by_id, by_name)
            if device is None:
                plan.discovered.append(
                    {
                        "protocol": DeviceProtocol(ref.protocol),
                        "identifier": ref.identifier[:128],
                        "home_hint": ref.home_id,
                        "last_topic": msg.topic[:256],
                        "first_seen_at": msg.received_at,
                        "last_seen_at": msg.received_at,
                        "last_kind": (
                            item.kind.value if isinstance(item, SensorEventMsg) else "status"
                        ),
                        "last_payload": _excerpt(msg.payload, excerpt_bytes),
                    }
                )
                continue
            if device.protocol.value != ref.protocol:
                plan.rejected.append(
                    _reject_row(
                        msg,
                        RejectReason.PROTOCOL_MISMATCH,
                        f"device {device.id} is registered as {device.protocol.value}, "
                        f"but this message is {ref.protocol}",
                        excerpt_bytes,
                    )
                )
                continue
            if ref.home_id is not None and ref.home_id != device.home_id:
                plan.rejected.append(
                    _reject_row(
                        msg,
                        RejectReason.HOME_MISMATCH,
                        f"device {device.id} belongs to home {device.home_id}, "
                        f"but the topic names home {ref.home_id}",
                        excerpt_bytes,
                    )
                )
                continue
            if device.hmac_key is not None:
                problem = _signature_problem(device, item)
                if problem is not None:
                    plan.rejected.append(
                        _reject_row(msg, RejectReason.BAD_SIGNATURE, problem, excerpt_bytes)
                    )
                    continue
                if isinstance(item, SensorEventMsg) and item.seq is not None:
                    last = signed_seq.get(device.id, device.last_seq)
                    if last is not None and item.seq <= last:
                        key = dedup_key(item)
                        pair = (device.id, key or "")
                        if pair in seen_keys or pair in stored_keys:
                            plan.duplicates_in_batch += 1
                            continue
                        plan.rejected.append(
                            _reject_row(
                                msg,
                                RejectReason.REPLAYED,
                                f"seq {item.seq} of device {device.id} is not above its last "
                                f"accepted seq {last}, and no such event is stored: a replay",
                                excerpt_bytes,
                            )
                        )
                        continue
                    signed_seq[device.id] = item.seq
            changes = plan.device_changes.setdefault(device.id, {})
            tel = item.telemetry
            if tel.battery is not None:
                changes["battery"] = tel.battery
            if tel.tamper is not None:
                changes["tamper"] = tel.tamper
            if tel.rssi is not None:
                changes["rssi"] = tel.rssi
            if isinstance(item, SensorEventMsg):
                changes["last_seen_at"] = msg.received_at
                if item.seq is not None:
                    changes["last_seq"] = item.seq
                online = True
                key = dedup_key(item)
                if key is not None:
                    if (device.id, key) in seen_keys:
                        plan.duplicates_in_batch += 1
                        continue
                    seen_keys.add((device.id, key))
                plan.events.append(
                    {
                        "device_id": device.id,
                        "home_id": device.home_id,
                        "kind": item.kind.value,
                        "event_ts": item.ts,
                        "received_at": msg.received_at,
                        "seq": item.seq,
                        "dedup_key": key,
                        "data": item.data(),
                    }
                )
            else:
                assert isinstance(item, StatusMsg)
                if item.online is False:
                    online = False
                else:
                    changes["last_seen_at"] = msg.received_at
                    online = True
            if online_now.get(device.id) is not online:
                online_now[device.id] = online
                changes["online"] = online
                plan.status_changes.append(
                    StatusChange(device.id, device.home_id, online, msg.received_at)
                )
                plan.events.append(
                    {
                        "device_id": device.id,
                        "home_id": device.home_id,
                        "kind": "status",
                        "event_ts": None,
                        "received_at": msg.received_at,
                        "seq": None,
                        "dedup_key": None,
                        "data": {"online": online},
                    }
                )
    return plan


def _is_transient(exc: BaseException) -> bool:
    """A database that is down, locked or restarting: retry the batch, ack nothing."""
    if isinstance(exc, OperationalError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


class IngestProcessor:
    """Turns batches of inbound messages into committed rows; one transaction per batch."""

    def __init__(
        self,
        settings: Settings,
        session_factory: sessionmaker[Session],
        sinks: Sequence[IngestSink] = (),
        decoder: Callable[[str, bytes], DecodeResult] | None = None,
    ) -> None:
        self._settings = settings
        self._session_factory = session_factory
        self._sinks = list(sinks)
        self._decoder = decoder or self._default_decoder

    def _default_decoder(self, topic: str, payload: bytes) -> DecodeResult:
        mqtt = self._settings.mqtt
        return decode(
            topic,
            payload,
            max_payload_bytes=self._settings.ingest.max_payload_bytes,
            topic_prefix=mqtt.topic_prefix,
            z2m_prefix=mqtt.zigbee2mqtt_prefix,
        )

    def decode(self, message: InboundMessage) -> DecodeResult:
        """Decode one message (pure; never raises)."""
        return self._decoder(message.topic, message.payload)

    def process(
        self,
        messages: Sequence[InboundMessage],
        decoded: Sequence[DecodeResult] | None = None,
    ) -> BatchOutcome:
        """Commit the effects of ``messages`` (``decoded``: their ``decode`` results, if the
        caller has them already).

        A database outage raises (the caller retries and acknowledges nothing). Any other failure
        is isolated: the batch is retried one message at a time and a message that still fails is
        kept as a rejected message with reason ``internal_error`` — never dropped silently.
        """
        try:
            return self._commit(messages, decoded)
        except Exception as exc:
            if _is_transient(exc):
                raise
            if len(messages) == 1:
                return self._keep_as_rejected(messages[0], exc)
            logger.exception("ingest batch of %d failed; isolating messages", len(messages))
        outcomes = [self._process_one(m) for m in messages]
        return BatchOutcome(
            stored=[e for o in outcomes for e in o.stored],
            status_changes=[s for o in outcomes for s in o.status_changes],
            duplicates=sum(o.duplicates for o in outcomes),
            rejected=sum(o.rejected for o in outcomes),
            discovered=sum(o.discovered for o in outcomes),
            ignored=sum(o.ignored for o in outcomes),
        )

    def _process_one(self, message: InboundMessage) -> BatchOutcome:
        try:
            return self._commit([message])
        except Exception as exc:
            if _is_transient(exc):
                raise
            return self._keep_as_rejected(message, exc)

    def _keep_as_rejected(self, message: InboundMessage, exc: Exception) -> BatchOutcome:
        logger.error(
            "ingest failed on a message from %s; kept as rejected", message.topic, exc_info=exc
        )
        reason = f"the hub could not process this message ({type(exc).__name__}: {exc})"[:2000]
        row = _reject_row(
            message,
            RejectReason.INTERNAL_ERROR,
            reason,
            self._settings.ingest.rejected_excerpt_bytes,
        )
        with self._session_factory() as session, session.begin():
            store.insert_rejected(session, [row], self._settings.ingest.rejected_keep)
        metrics.MESSAGES_REJECTED.labels(reason=RejectReason.INTERNAL_ERROR.value).inc()
        return BatchOutcome([], [], 0, 1, 0, 0)

    def _commit(
        self,
        messages: Sequence[InboundMessage],
        decoded: Sequence[DecodeResult] | None = None,
    ) -> BatchOutcome:
        results = list(decoded) if decoded is not None else [self.decode(m) for m in messages]
        native_ids: set[str] = set()
        z2m_names: set[str] = set()
        for result in results:
            if isinstance(result, Decoded):
                for item in result.messages:
                    if item.device.protocol == "native":
                        native_ids.add(item.device.identifier)
                    else:
                        z2m_names.add(item.device.identifier)
        with self._session_factory() as session, session.begin():
            by_id, by_name = store.load_devices(session, native_ids, z2m_names)
            plan = plan_batch(
                messages,
                results,
                by_id,
                by_name,
                excerpt_bytes=self._settings.ingest.rejected_excerpt_bytes,
                stored_keys=store.stored_event_keys(session, replay_candidates(results, by_id)),
            )
            stored = store.insert_events(session, plan.events)
            store.update_devices(session, plan.device_changes)
            store.upsert_discovered(session, plan.discovered)
            store.insert_rejected(session, plan.rejected, self._settings.ingest.rejected_keep)
            sensor_rows = sum(1 for e in plan.events if e["kind"] != "status")
            stored_sensor = sum(1 for e in stored if e.kind != "status")
            outcome = BatchOutcome(
                stored=stored,
                status_changes=plan.status_changes,
                duplicates=plan.duplicates_in_batch + (sensor_rows - stored_sensor),
                rejected=len(plan.rejected),
                discovered=len(plan.discovered),
                ignored=plan.ignored,
            )
            for sink in self._sinks:
                sink.handle(session, outcome)
            info = session.info
        self._count(outcome, plan)
        for sink in self._sinks:
            try:
                sink.after_commit(info)
            except Exception:
                logger.exception("post-commit step of %s failed", type(sink).__name__)
        return outcome

    @staticmethod
    def _count(outcome: BatchOutcome, plan: BatchPlan) -> None:
        for event in outcome.stored:
            metrics.EVENTS_STORED.labels(kind=event.kind).inc()
        if outcome.duplicates:
            metrics.EVENTS_DUPLICATE.inc(outcome.duplicates)
        for row in plan.rejected:
            metrics.MESSAGES_REJECTED.labels(reason=row["reason_code"]).inc()
        if outcome.ignored:
            metrics.MESSAGES_IGNORED.inc(outcome.ignored)
        if outcome.discovered:
            metrics.DISCOVERED_MESSAGES.inc(outcome.discovered)
