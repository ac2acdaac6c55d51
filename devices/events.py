"""Typed results of decoding a device message: events, status reports, or a readable rejection.

Codecs are pure: ``decode(topic, payload) -> Decoded | Rejected | Ignored`` and never raise.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal


class EventKind(enum.StrEnum):
    FALL = "fall"
    DOOR = "door"
    MOTION = "motion"
    BUTTON = "button"


class RejectReason(enum.StrEnum):
    """Why a message was refused; the code is a metric label, the text says the rest."""

    OVERSIZED = "oversized"
    NOT_UTF8 = "not_utf8"
    INVALID_JSON = "invalid_json"
    NOT_AN_OBJECT = "not_an_object"
    SCHEMA = "schema"  # a field is missing, has the wrong type or is out of range
    UNKNOWN_TOPIC = "unknown_topic"
    HOME_MISMATCH = "home_mismatch"  # device registered to another home than the topic says
    PROTOCOL_MISMATCH = "protocol_mismatch"  # registered native, spoke Zigbee2MQTT, or vice versa
    BAD_SIGNATURE = "bad_signature"  # a device with an HMAC key sent no or a wrong "sig"
    REPLAYED = "replayed"  # a signed event whose seq is not above the last accepted one
    INTERNAL_ERROR = "internal_error"  # the hub failed to process it (a bug): kept, never dropped


@dataclass(frozen=True, slots=True)
class DeviceRef:
    """Who sent a message, as far as the topic says."""

    protocol: Literal["native", "zigbee2mqtt"]
    # native: the <device_id> of the topic; zigbee2mqtt: the <friendly_name>
    identifier: str
    # native topics name the home; Zigbee2MQTT topics do not
    home_id: str | None = None


@dataclass(frozen=True, slots=True)
class Telemetry:
    """Optional health fields any message may carry."""

    battery: int | None = None
    tamper: bool | None = None
    rssi: int | None = None


@dataclass(frozen=True, slots=True)
class Signature:
    """A payload's ``sig`` field and the canonical bytes it must cover (devices/signing.py)."""

    sig: str  # as sent; not necessarily valid base64
    body: bytes | None  # None when the payload cannot be put in canonical form


@dataclass(frozen=True, slots=True)
class SensorEventMsg:
    """One thing that happened at a device (fall, door, motion, button)."""

    device: DeviceRef
    kind: EventKind
    ts: datetime | None  # device time (aware); None when the protocol has none (Zigbee2MQTT)
    seq: int | None  # native: per-device increasing counter; None for Zigbee2MQTT
    telemetry: Telemetry = Telemetry()
    # fall: "fall" | "maybe_fall"; confidence 0..1 when given
    fall_state: Literal["fall", "maybe_fall"] | None = None
    confidence: float | None = None
    # door: True = open
    open: bool | None = None
    # motion: True = motion detected
    motion: bool | None = None
    # button: "press" | "cancel"
    action: Literal["press", "cancel"] | None = None
    # Zigbee2MQTT's last_seen, if the bridge is configured to send it (used for de-duplication)
    last_seen: str | None = None
    # native payloads with a "sig" field; checked by ingest against the device's HMAC key
    signature: Signature | None = None

    def data(self) -> dict[str, object]:
        """The kind-specific fields, for storage."""
        out: dict[str, object] = {}
        for key in ("fall_state", "confidence", "open", "motion", "action"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        for key in ("battery", "tamper", "rssi"):
            value = getattr(self.telemetry, key)
            if value is not None:
                out[key] = value
        return out


@dataclass(frozen=True, slots=True)
class StatusMsg:
    """A device's status report or last will; ``online`` None means "telemetry only"."""

    device: DeviceRef
    online: bool | None
    telemetry: Telemetry = Telemetry()
    ts: datetime | None = None
    signature: Signature | None = None


DeviceMessage = SensorEventMsg | StatusMsg


@dataclass(frozen=True, slots=True)
class Decoded:
    """A message understood: one or more typed messages (Zigbee2MQTT payloads can carry several)."""

    messages: tuple[DeviceMessage, ...]
    # Things worth recording that are not events, e.g. a radar's "none" fall state.
    notes: tuple[str, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class Rejected:
    """A message refused, with a reason an operator can read."""

    code: RejectReason
    reason: str
    device: DeviceRef | None = None


@dataclass(frozen=True, slots=True)
class Ignored:
    """A message on a subscribed topic that is not for the hub (e.g. Zigbee2MQTT bridge chatter)."""

    reason: str


DecodeResult = Decoded | Rejected | Ignored
