"""Zigbee2MQTT device and availability payloads to typed messages (docs/mqtt.md has the table)."""

from __future__ import annotations

import math
from typing import Literal

from devices.codecs._common import (
    Fields,
    JsonObject,
    as_object,
    describe,
    load_json,
    load_object,
)
from devices.events import (
    Decoded,
    DeviceMessage,
    DeviceRef,
    EventKind,
    Ignored,
    Rejected,
    RejectReason,
    SensorEventMsg,
    StatusMsg,
    Telemetry,
)

# `action` values. Any way of pressing raises the alarm: a pendant held down or pressed twice by
# a resident in distress is still a call for help, so we never read a press pattern as "cancel".
# Only an explicit cancel (or "off" on a two-button on/off remote) cancels.
PRESS_ACTIONS = frozenset(
    {
        "single",
        "press",
        "on",
        "sos",
        "emergency",
        "panic",
        "double",
        "triple",
        "quadruple",
        "many",
        "long",
        "hold",
    }
)
CANCEL_ACTIONS = frozenset({"cancel", "off"})
# "release" ends a "hold" that has already raised the press: recorded as a note, not an event.
QUIET_ACTIONS = frozenset({"release"})

FALL_STATES: tuple[str, ...] = ("none", "maybe_fall", "fall")
AVAILABILITY_STATES: tuple[str, ...] = ("online", "offline")
_AVAILABILITY_FORMS = 'availability must be online, offline or {"state": "online"|"offline"}'
LINKQUALITY_RANGE = (0, 255)
# last_seen goes into the de-duplication key (96 characters with a prefix); keep it short.
MAX_LAST_SEEN_LENGTH = 64


def _battery(obj: JsonObject, notes: list[str]) -> int | None:
    value = obj.get("battery")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        notes.append(f'field "battery" ignored: must be a number (got {describe(value)})')
        return None
    if not (math.isfinite(value) and 0 <= value <= 100):
        notes.append(f'field "battery" ignored: must be from 0 to 100 (got {describe(value)})')
        return None
    return int(value + 0.5)


def _tamper(obj: JsonObject, notes: list[str]) -> bool | None:
    value = obj.get("tamper")
    if value is None or isinstance(value, bool):
        return value
    notes.append(f'field "tamper" ignored: must be true or false (got {describe(value)})')
    return None


def _linkquality(obj: JsonObject, notes: list[str]) -> int | None:
    value = obj.get("linkquality")
    if value is None:
        return None
    low, high = LINKQUALITY_RANGE
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        notes.append(
            f'field "linkquality" ignored: must be a whole number from {low} to {high} '
            f"(got {describe(value)})"
        )
        return None
    return value


def _last_seen(obj: JsonObject, notes: list[str]) -> str | None:
    value = obj.get("last_seen")
    if value is None:
        return None
    text: str | None = None
    if isinstance(value, str):
        text = value
    elif isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        text = str(int(value)) if float(value).is_integer() else repr(value)
    if text is None or not text or len(text) > MAX_LAST_SEEN_LENGTH or not text.isprintable():
        notes.append(
            f'field "last_seen" ignored: must be a time text or a number (got {describe(value)})'
        )
        return None
    return text


def _button_action(fields: Fields, notes: list[str]) -> Literal["press", "cancel"] | None:
    action = fields.text("action")
    if action is None or action == "":
        # Zigbee2MQTT's legacy mode resets the action to "" after each press.
        return None
    key = action.lower()
    if key in PRESS_ACTIONS:
        return "press"
    if key in CANCEL_ACTIONS:
        return "cancel"
    if key in QUIET_ACTIONS:
        notes.append(f"action {describe(action)}: end of a hold, not an event")
    else:
        notes.append(f"action {describe(action)}: not a known alarm-button action, not an event")
    return None


def state_from_object(device: DeviceRef, obj: JsonObject) -> Decoded | Rejected:
    """A Zigbee2MQTT device state object to events (plus a status when it carries no event).

    Event attributes with a wrong type or value reject the whole message; bad telemetry is
    dropped with a note so that it can never cost an alarm. ``null`` means "not reported".
    """
    fields = Fields(obj)
    notes: list[str] = []
    contact = fields.boolean("contact")
    occupancy = fields.boolean("occupancy")
    fall_state = fields.choice("fall_down_status", FALL_STATES)
    action = _button_action(fields, notes)
    if fields.errors:
        return Rejected(RejectReason.SCHEMA, fields.reason(), device)

    telemetry = Telemetry(
        battery=_battery(obj, notes), tamper=_tamper(obj, notes), rssi=_linkquality(obj, notes)
    )
    last_seen = _last_seen(obj, notes)

    def event(
        kind: EventKind,
        *,
        fall_state: Literal["fall", "maybe_fall"] | None = None,
        action: Literal["press", "cancel"] | None = None,
        open_: bool | None = None,
        motion: bool | None = None,
    ) -> SensorEventMsg:
        return SensorEventMsg(
            device=device,
            kind=kind,
            ts=None,
            seq=None,
            telemetry=telemetry,
            fall_state=fall_state,
            open=open_,
            motion=motion,
            action=action,
            last_seen=last_seen,
        )

    messages: list[DeviceMessage] = []
    if fall_state == "fall":
        messages.append(event(EventKind.FALL, fall_state="fall"))
    elif fall_state == "maybe_fall":
        messages.append(event(EventKind.FALL, fall_state="maybe_fall"))
    elif fall_state == "none":
        notes.append('fall_down_status "none": no fall')
    if action is not None:
        messages.append(event(EventKind.BUTTON, action=action))
    if contact is not None:
        # contact true = magnet against the sensor = closed; false = open.
        messages.append(event(EventKind.DOOR, open_=not contact))
    if occupancy is not None:
        messages.append(event(EventKind.MOTION, motion=occupancy))
    if not messages:
        # Telemetry only (or nothing the hub uses): still proof that the device is alive.
        messages.append(StatusMsg(device=device, online=None, telemetry=telemetry))
    return Decoded(tuple(messages), tuple(notes))


def decode_state(device: DeviceRef, payload: bytes) -> Decoded | Rejected | Ignored:
    """A payload from ``zigbee2mqtt/<friendly_name>`` (already size-checked)."""
    if not payload:
        return Ignored("empty payload: Zigbee2MQTT cleared a retained state")
    obj = load_object(payload, device)
    if isinstance(obj, Rejected):
        return obj
    return state_from_object(device, obj)


def decode_availability(device: DeviceRef, payload: bytes) -> Decoded | Rejected | Ignored:
    """``online``/``offline`` as plain text or as ``{"state": "online"|"offline"}``."""
    if not payload:
        return Ignored("empty payload: Zigbee2MQTT cleared a retained availability")
    plain = payload.strip()
    if plain in (b"online", b"offline"):
        return Decoded((StatusMsg(device=device, online=plain == b"online"),))
    value = load_json(payload, device)
    if isinstance(value, Rejected):
        if value.code is not RejectReason.INVALID_JSON:
            return value
        got = describe(payload.decode("utf-8"))
        return Rejected(value.code, f"{_AVAILABILITY_FORMS} (got {got})", device)
    obj = as_object(value, device)
    if isinstance(obj, Rejected):
        return Rejected(obj.code, f"{_AVAILABILITY_FORMS} (got {describe(value)})", device)
    fields = Fields(obj)
    state = fields.choice("state", AVAILABILITY_STATES, required=True)
    if state is None:
        return Rejected(RejectReason.SCHEMA, fields.reason(), device)
    return Decoded((StatusMsg(device=device, online=state == "online"),))
