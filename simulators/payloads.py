"""Pure builders of the MQTT messages devices send, to the letter of the external contract."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from devices.signing import sign_payload

NATIVE_PREFIX = "carehub/v1"
Z2M_PREFIX = "zigbee2mqtt"

# What a Zigbee2MQTT pendant reports for the resident's press and for an explicit cancel. Any
# press pattern (double, hold...) still means "help": only "cancel" (or "off") cancels.
Z2M_PRESS_ACTION = "single"
Z2M_CANCEL_ACTION = "cancel"

ButtonAction = Literal["press", "cancel"]
FallDownStatus = Literal["none", "maybe_fall", "fall"]
AvailabilityFormat = Literal["plain", "json"]


@dataclass(frozen=True, slots=True)
class MqttMessage:
    """One message a device publishes: topic, UTF-8 payload and whether the broker keeps it."""

    topic: str
    payload: bytes
    retain: bool = False

    @property
    def text(self) -> str:
        return self.payload.decode("utf-8")

    def json(self) -> object:
        """The payload parsed as JSON (Zigbee2MQTT's plain availability is not JSON)."""
        return json.loads(self.payload)


# --- topics -------------------------------------------------------------------------------------


def native_event_topic(home_id: str, device_id: str) -> str:
    return (
        f"{NATIVE_PREFIX}/{_segment(home_id, 'home_id')}/{_segment(device_id, 'device_id')}/event"
    )


def native_status_topic(home_id: str, device_id: str) -> str:
    return (
        f"{NATIVE_PREFIX}/{_segment(home_id, 'home_id')}/{_segment(device_id, 'device_id')}/status"
    )


def z2m_state_topic(friendly_name: str) -> str:
    return f"{Z2M_PREFIX}/{_segment(friendly_name, 'friendly_name')}"


def z2m_availability_topic(friendly_name: str) -> str:
    return f"{z2m_state_topic(friendly_name)}/availability"


# --- native v1 ----------------------------------------------------------------------------------


def native_fall(
    home_id: str,
    device_id: str,
    *,
    ts: datetime,
    seq: int,
    confidence: float | None = None,
    battery: int | None = None,
    tamper: bool | None = None,
) -> MqttMessage:
    """``{"type": "fall", ...}`` with an optional ``confidence`` in 0..1."""
    fields: dict[str, object] = {}
    if confidence is not None:
        fields["confidence"] = _confidence(confidence)
    return _native_event(home_id, device_id, "fall", ts, seq, fields, battery, tamper)


def native_door(
    home_id: str,
    device_id: str,
    *,
    open: bool,
    ts: datetime,
    seq: int,
    battery: int | None = None,
    tamper: bool | None = None,
) -> MqttMessage:
    """``{"type": "door", "open": bool, ...}``."""
    fields: dict[str, object] = {"open": _bool(open, "open")}
    return _native_event(home_id, device_id, "door", ts, seq, fields, battery, tamper)


def native_motion(
    home_id: str,
    device_id: str,
    *,
    motion: bool,
    ts: datetime,
    seq: int,
    battery: int | None = None,
    tamper: bool | None = None,
) -> MqttMessage:
    """``{"type": "motion", "motion": bool, ...}``."""
    fields: dict[str, object] = {"motion": _bool(motion, "motion")}
    return _native_event(home_id, device_id, "motion", ts, seq, fields, battery, tamper)


def native_button(
    home_id: str,
    device_id: str,
    *,
    action: ButtonAction,
    ts: datetime,
    seq: int,
    battery: int | None = None,
    tamper: bool | None = None,
) -> MqttMessage:
    """``{"type": "button", "action": "press"|"cancel", ...}``."""
    if action not in ("press", "cancel"):
        raise ValueError(f"button action must be 'press' or 'cancel', not {action!r}")
    fields: dict[str, object] = {"action": action}
    return _native_event(home_id, device_id, "button", ts, seq, fields, battery, tamper)


def native_status(
    home_id: str,
    device_id: str,
    *,
    online: bool,
    battery: int | None = None,
    rssi: int | None = None,
) -> MqttMessage:
    """The retained ``{"online": bool, "battery"?, "rssi"?}`` status (also the last will)."""
    body: dict[str, object] = {"online": _bool(online, "online")}
    if battery is not None:
        body["battery"] = _battery(battery)
    if rssi is not None:
        body["rssi"] = _int(rssi, "rssi")
    return MqttMessage(native_status_topic(home_id, device_id), _dump(body), retain=True)


def signed(message: MqttMessage, key: bytes) -> MqttMessage:
    """``message`` with its ``sig`` added: HMAC-SHA256 under the device's key, as the hub checks
    it (devices/signing.py, docs/mqtt.md "Signed payloads"). Only native JSON payloads sign."""
    if not message.topic.startswith(f"{NATIVE_PREFIX}/"):
        raise ValueError("only native carehub/v1 payloads can be signed (Zigbee2MQTT cannot)")
    return MqttMessage(message.topic, sign_payload(message.payload, key), message.retain)


# --- Zigbee2MQTT --------------------------------------------------------------------------------


def z2m_door(
    friendly_name: str,
    *,
    open: bool,
    battery: int | None = None,
    linkquality: int | None = None,
    tamper: bool | None = None,
) -> MqttMessage:
    """A contact sensor's state: ``contact`` false means the door is open."""
    body: dict[str, object] = {"contact": not _bool(open, "open")}
    return _z2m_state(friendly_name, body, battery, linkquality, tamper)


def z2m_motion(
    friendly_name: str,
    *,
    occupancy: bool,
    battery: int | None = None,
    linkquality: int | None = None,
    tamper: bool | None = None,
) -> MqttMessage:
    """An occupancy (PIR) sensor's state."""
    body: dict[str, object] = {"occupancy": _bool(occupancy, "occupancy")}
    return _z2m_state(friendly_name, body, battery, linkquality, tamper)


def z2m_button(
    friendly_name: str,
    *,
    action: ButtonAction,
    battery: int | None = None,
    linkquality: int | None = None,
    tamper: bool | None = None,
) -> MqttMessage:
    """A pendant's ``action``: ``single`` for a press, ``cancel`` for a cancel."""
    if action == "press":
        z2m_action = Z2M_PRESS_ACTION
    elif action == "cancel":
        z2m_action = Z2M_CANCEL_ACTION
    else:
        raise ValueError(f"button action must be 'press' or 'cancel', not {action!r}")
    body: dict[str, object] = {"action": z2m_action}
    return _z2m_state(friendly_name, body, battery, linkquality, tamper)


def z2m_fall(
    friendly_name: str,
    *,
    status: FallDownStatus,
    battery: int | None = None,
    linkquality: int | None = None,
    tamper: bool | None = None,
) -> MqttMessage:
    """A TuYa fall radar's ``fall_down_status``: ``none``, ``maybe_fall`` or ``fall``."""
    if status not in ("none", "maybe_fall", "fall"):
        raise ValueError(f"fall_down_status must be none, maybe_fall or fall, not {status!r}")
    body: dict[str, object] = {"fall_down_status": status}
    return _z2m_state(friendly_name, body, battery, linkquality, tamper)


def z2m_availability(
    friendly_name: str, *, online: bool, fmt: AvailabilityFormat = "plain"
) -> MqttMessage:
    """Retained availability: plain ``online``/``offline`` (legacy) or ``{"state": ...}``."""
    state = "online" if _bool(online, "online") else "offline"
    if fmt == "plain":
        payload = state.encode("utf-8")
    elif fmt == "json":
        payload = _dump({"state": state})
    else:
        raise ValueError(f"availability format must be 'plain' or 'json', not {fmt!r}")
    return MqttMessage(z2m_availability_topic(friendly_name), payload, retain=True)


# --- helpers ------------------------------------------------------------------------------------


def iso_timestamp(ts: datetime) -> str:
    """ISO 8601 with the zone of ``ts`` kept as given (naive times are refused)."""
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError("ts must be timezone-aware: the contract wants ISO 8601 with a zone")
    return ts.isoformat()


def _native_event(
    home_id: str,
    device_id: str,
    kind: str,
    ts: datetime,
    seq: int,
    fields: dict[str, object],
    battery: int | None,
    tamper: bool | None,
) -> MqttMessage:
    body: dict[str, object] = {"type": kind, "ts": iso_timestamp(ts), "seq": _seq(seq)}
    body.update(fields)
    if battery is not None:
        body["battery"] = _battery(battery)
    if tamper is not None:
        body["tamper"] = _bool(tamper, "tamper")
    return MqttMessage(native_event_topic(home_id, device_id), _dump(body))


def _z2m_state(
    friendly_name: str,
    body: dict[str, object],
    battery: int | None,
    linkquality: int | None,
    tamper: bool | None,
) -> MqttMessage:
    if battery is not None:
        body["battery"] = _battery(battery)
    if linkquality is not None:
        body["linkquality"] = _int(linkquality, "linkquality")
    if tamper is not None:
        body["tamper"] = _bool(tamper, "tamper")
    return MqttMessage(z2m_state_topic(friendly_name), _dump(body))


def _dump(body: dict[str, object]) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _segment(value: str, name: str) -> str:
    if not value or any(c in value for c in "/+#\x00"):
        raise ValueError(f"{name} must be a non-empty topic segment without / + #, not {value!r}")
    return value


def _bool(value: bool, name: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, not {value!r}")
    return value


def _int(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, not {value!r}")
    return value


def _seq(value: int) -> int:
    if _int(value, "seq") < 0:
        raise ValueError(f"seq must not be negative, not {value}")
    return value


def _battery(value: int) -> int:
    if not 0 <= _int(value, "battery") <= 100:
        raise ValueError(f"battery must be 0..100, not {value}")
    return value


def _confidence(value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(f"confidence must be a number in 0..1, not {value!r}")
    return float(value)
