"""The native v1 payload contract: event and status JSON to typed messages, and back."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from devices.codecs._common import MAX_SEQ, Fields, JsonObject, load_object
from devices.events import (
    Decoded,
    DeviceRef,
    EventKind,
    Ignored,
    Rejected,
    RejectReason,
    SensorEventMsg,
    Signature,
    StatusMsg,
    Telemetry,
)
from devices.signing import SIG_FIELD, canonical_json

EVENT_TYPES: tuple[str, ...] = tuple(kind.value for kind in EventKind)
BUTTON_ACTIONS: tuple[str, ...] = ("press", "cancel")
BATTERY_RANGE = (0, 100)
# Signal strength: dBm (negative) from native devices, link quality 0..255 from Zigbee2MQTT.
RSSI_RANGE = (-255, 255)


def _signature(obj: JsonObject) -> Signature | None:
    """The payload's ``sig`` and what it must cover; None when the payload is not signed."""
    if SIG_FIELD not in obj:
        return None
    sig = obj[SIG_FIELD]
    try:
        body: bytes | None = canonical_json(obj)
    except (UnicodeEncodeError, ValueError):
        body = None  # e.g. a lone surrogate: no canonical form, so no valid signature
    return Signature(sig if isinstance(sig, str) else "", body)


def _telemetry(fields: Fields) -> Telemetry:
    return Telemetry(
        battery=fields.integer("battery", *BATTERY_RANGE),
        tamper=fields.boolean("tamper"),
        rssi=fields.integer("rssi", *RSSI_RANGE),
    )


def event_from_object(device: DeviceRef, obj: JsonObject) -> SensorEventMsg | Rejected:
    """Validate a native event object; unknown extra keys are ignored."""
    fields = Fields(obj)
    kind_text = fields.choice("type", EVENT_TYPES, required=True)
    ts = fields.time("ts", required=True)
    seq = fields.integer("seq", 0, MAX_SEQ, required=True)
    telemetry = _telemetry(fields)
    kind = EventKind(kind_text) if kind_text is not None else None
    open_ = motion = None
    action: str | None = None
    confidence: float | None = None
    if kind is EventKind.DOOR:
        open_ = fields.boolean("open", required=True)
    elif kind is EventKind.MOTION:
        motion = fields.boolean("motion", required=True)
    elif kind is EventKind.BUTTON:
        action = fields.choice("action", BUTTON_ACTIONS, required=True)
    elif kind is EventKind.FALL:
        confidence = fields.number("confidence", 0.0, 1.0)
    if fields.errors or kind is None or ts is None or seq is None:
        return Rejected(RejectReason.SCHEMA, fields.reason(), device)
    return SensorEventMsg(
        device=device,
        kind=kind,
        ts=ts,
        seq=seq,
        telemetry=telemetry,
        fall_state="fall" if kind is EventKind.FALL else None,
        confidence=confidence,
        open=open_,
        motion=motion,
        action="press" if action == "press" else "cancel" if action == "cancel" else None,
        signature=_signature(obj),
    )


def status_from_object(device: DeviceRef, obj: JsonObject) -> StatusMsg | Rejected:
    """Validate a native status object (also the device's last will)."""
    fields = Fields(obj)
    online = fields.boolean("online", required=True)
    telemetry = _telemetry(fields)
    ts = fields.time("ts")
    if fields.errors or online is None:
        return Rejected(RejectReason.SCHEMA, fields.reason(), device)
    return StatusMsg(
        device=device, online=online, telemetry=telemetry, ts=ts, signature=_signature(obj)
    )


def decode_event(device: DeviceRef, payload: bytes) -> Decoded | Rejected:
    """An event payload (already size-checked) to one SensorEventMsg."""
    if not payload:
        return Rejected(RejectReason.INVALID_JSON, "payload is empty", device)
    obj = load_object(payload, device)
    if isinstance(obj, Rejected):
        return obj
    event = event_from_object(device, obj)
    if isinstance(event, Rejected):
        return event
    return Decoded((event,))


def decode_status(device: DeviceRef, payload: bytes) -> Decoded | Rejected | Ignored:
    """A status payload (already size-checked) to one StatusMsg; empty = retained status cleared."""
    if not payload:
        return Ignored("empty payload: the retained status was cleared")
    obj = load_object(payload, device)
    if isinstance(obj, Rejected):
        return obj
    status = status_from_object(device, obj)
    if isinstance(status, Rejected):
        return status
    return Decoded((status,))


# --- Encoding (for simulators and tests) ---------------------------------------------------------

_PROBE = DeviceRef(protocol="native", identifier="encoder")


def _dump(obj: JsonObject) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def format_time(ts: datetime) -> str:
    """ISO 8601 with a zone offset, as the contract wants it; ValueError for a naive time."""
    offset = ts.utcoffset()
    if offset is None:
        raise ValueError("ts must be timezone-aware")
    if offset.seconds % 60 or offset.microseconds:
        # ISO 8601 offsets are whole minutes (historic local mean times are not): say it in UTC.
        ts = ts.astimezone(UTC)
    return ts.isoformat()


def _put_telemetry(
    obj: JsonObject, battery: int | None, tamper: bool | None, rssi: int | None
) -> None:
    for key, value in (("battery", battery), ("tamper", tamper), ("rssi", rssi)):
        if value is not None:
            obj[key] = value


def encode_event(
    kind: EventKind | str,
    *,
    ts: datetime,
    seq: int,
    open: bool | None = None,
    motion: bool | None = None,
    action: str | None = None,
    confidence: float | None = None,
    battery: int | None = None,
    tamper: bool | None = None,
    rssi: int | None = None,
) -> bytes:
    """A valid native v1 event payload; ValueError with the decoder's reason if it is not valid."""
    obj: JsonObject = {
        "type": EventKind(kind).value,
        "ts": format_time(ts),
        "seq": seq,
    }
    for key, value in (
        ("open", open),
        ("motion", motion),
        ("action", action),
        ("confidence", confidence),
    ):
        if value is not None:
            obj[key] = value
    _put_telemetry(obj, battery, tamper, rssi)
    checked = event_from_object(_PROBE, obj)
    if isinstance(checked, Rejected):
        raise ValueError(checked.reason)
    return _dump(obj)


def encode_status(
    online: bool,
    *,
    battery: int | None = None,
    rssi: int | None = None,
    tamper: bool | None = None,
    ts: datetime | None = None,
) -> bytes:
    """A valid native v1 status payload (use it as the retained status and as the last will)."""
    obj: JsonObject = {"online": online}
    _put_telemetry(obj, battery, tamper, rssi)
    if ts is not None:
        obj["ts"] = format_time(ts)
    checked = status_from_object(_PROBE, obj)
    if isinstance(checked, Rejected):
        raise ValueError(checked.reason)
    return _dump(obj)
