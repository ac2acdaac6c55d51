"""Zigbee2MQTT payloads: contact, occupancy, action and fall radar to events, plus availability."""

from __future__ import annotations

import json

import pytest

from devices.codecs import decode
from devices.codecs.zigbee2mqtt import CANCEL_ACTIONS, PRESS_ACTIONS
from devices.events import (
    Decoded,
    DeviceRef,
    EventKind,
    Ignored,
    Rejected,
    RejectReason,
    SensorEventMsg,
    StatusMsg,
    Telemetry,
)

STATE = "zigbee2mqtt/hall/door"
AVAILABILITY = "zigbee2mqtt/hall/door/availability"
DEVICE = DeviceRef(protocol="zigbee2mqtt", identifier="hall/door")


def decoded(payload: dict[str, object], topic: str = STATE) -> Decoded:
    result = decode(topic, json.dumps(payload).encode())
    assert isinstance(result, Decoded), result
    return result


def only_event(payload: dict[str, object]) -> SensorEventMsg:
    result = decoded(payload)
    (msg,) = result.messages
    assert isinstance(msg, SensorEventMsg)
    assert msg.device == DEVICE
    assert (msg.ts, msg.seq) == (None, None)
    return msg


def rejected(payload: bytes, topic: str = STATE) -> Rejected:
    result = decode(topic, payload)
    assert isinstance(result, Rejected), result
    assert result.device == DeviceRef(protocol="zigbee2mqtt", identifier="hall/door")
    return result


# --- events -------------------------------------------------------------------------------------


def test_contact_false_means_the_door_is_open() -> None:
    msg = only_event({"contact": False})
    assert (msg.kind, msg.open) == (EventKind.DOOR, True)


def test_contact_true_means_the_door_is_closed() -> None:
    assert only_event({"contact": True}).open is False


@pytest.mark.parametrize("occupancy", [True, False])
def test_occupancy_is_motion(occupancy: bool) -> None:
    msg = only_event({"occupancy": occupancy})
    assert (msg.kind, msg.motion) == (EventKind.MOTION, occupancy)


@pytest.mark.parametrize("status", ["fall", "maybe_fall"])
def test_fall_radar_fall_states(status: str) -> None:
    msg = only_event({"fall_down_status": status})
    assert (msg.kind, msg.fall_state) == (EventKind.FALL, status)


def test_fall_radar_none_is_a_note_not_an_event() -> None:
    result = decoded({"fall_down_status": "none", "linkquality": 90})
    assert result.messages == (StatusMsg(DEVICE, online=None, telemetry=Telemetry(rssi=90)),)
    assert result.notes == ('fall_down_status "none": no fall',)


@pytest.mark.parametrize("action", sorted(PRESS_ACTIONS))
def test_every_way_of_pressing_is_a_press(action: str) -> None:
    msg = only_event({"action": action})
    assert (msg.kind, msg.action) == (EventKind.BUTTON, "press")


@pytest.mark.parametrize("action", ["single", "press", "on", "sos", "emergency", "double", "hold"])
def test_the_documented_press_actions(action: str) -> None:
    assert only_event({"action": action}).action == "press"


@pytest.mark.parametrize("action", sorted(CANCEL_ACTIONS))
def test_only_explicit_cancels_cancel(action: str) -> None:
    assert only_event({"action": action}).action == "cancel"


def test_actions_are_matched_without_regard_to_case() -> None:
    assert only_event({"action": "SOS"}).action == "press"


def test_unknown_action_is_a_note_and_the_device_is_still_heard() -> None:
    result = decoded({"action": "brightness_move_up", "battery": 70})
    assert result.messages == (StatusMsg(DEVICE, online=None, telemetry=Telemetry(battery=70)),)
    assert result.notes == (
        'action "brightness_move_up": not a known alarm-button action, not an event',
    )


def test_release_after_hold_is_a_note() -> None:
    result = decoded({"action": "release"})
    assert not any(isinstance(m, SensorEventMsg) for m in result.messages)
    assert result.notes == ('action "release": end of a hold, not an event',)


def test_legacy_empty_action_reset_is_nothing() -> None:
    result = decoded({"action": ""})
    assert result == Decoded((StatusMsg(DEVICE, online=None),))


def test_several_attributes_give_several_events_sharing_telemetry_and_last_seen() -> None:
    result = decoded(
        {
            "occupancy": True,
            "contact": False,
            "fall_down_status": "fall",
            "battery": 64,
            "tamper": False,
            "linkquality": 131,
            "last_seen": "2026-01-05T13:32:00.123Z",
        }
    )
    assert [m.kind for m in result.messages if isinstance(m, SensorEventMsg)] == [
        EventKind.FALL,
        EventKind.DOOR,
        EventKind.MOTION,
    ]
    for msg in result.messages:
        assert isinstance(msg, SensorEventMsg)
        assert msg.telemetry == Telemetry(battery=64, tamper=False, rssi=131)
        assert msg.last_seen == "2026-01-05T13:32:00.123Z"
    assert result.notes == ()


def test_button_event_carries_its_telemetry() -> None:
    msg = only_event({"action": "single", "battery": 100, "linkquality": 40})
    assert msg.data() == {"action": "press", "battery": 100, "rssi": 40}


# --- telemetry ----------------------------------------------------------------------------------


def test_telemetry_only_is_one_status_with_unknown_online() -> None:
    result = decoded({"battery": 80, "linkquality": 120})
    assert result == Decoded(
        (StatusMsg(DEVICE, online=None, telemetry=Telemetry(battery=80, rssi=120)),)
    )


def test_tamper_only_is_a_status() -> None:
    assert decoded({"tamper": True}).messages == (
        StatusMsg(DEVICE, online=None, telemetry=Telemetry(tamper=True)),
    )


@pytest.mark.parametrize(("battery", "expected"), [(99.5, 100), (12.4, 12), (0, 0), (100.0, 100)])
def test_battery_numbers_become_whole_percentages(battery: float, expected: int) -> None:
    (msg,) = decoded({"battery": battery}).messages
    assert msg.telemetry.battery == expected


def test_null_attributes_mean_not_reported() -> None:
    result = decoded(
        {"contact": None, "occupancy": None, "action": None, "battery": None, "last_seen": None}
    )
    assert result == Decoded((StatusMsg(DEVICE, online=None),))


def test_attributes_the_hub_does_not_use_still_show_the_device_is_alive() -> None:
    result = decoded({"state": "ON", "brightness": 254, "voltage": 3000})
    assert result == Decoded((StatusMsg(DEVICE, online=None),))


@pytest.mark.parametrize(
    ("telemetry", "note"),
    [
        ({"battery": 200}, 'field "battery" ignored: must be from 0 to 100 (got 200)'),
        ({"battery": "low"}, 'field "battery" ignored: must be a number (got "low")'),
        ({"tamper": 1}, 'field "tamper" ignored: must be true or false (got 1)'),
        ({"linkquality": 300}, 'field "linkquality" ignored: must be a whole number from 0 to'),
        ({"last_seen": True}, 'field "last_seen" ignored: must be a time text or a number'),
        ({"last_seen": "x" * 65}, 'field "last_seen" ignored'),
    ],
)
def test_bad_telemetry_never_costs_an_alarm(telemetry: dict[str, object], note: str) -> None:
    result = decoded({"contact": False, "battery": 50, **telemetry})
    (msg,) = result.messages
    assert isinstance(msg, SensorEventMsg)
    assert (msg.kind, msg.open) == (EventKind.DOOR, True)
    (found,) = result.notes
    assert found.startswith(note), found


@pytest.mark.parametrize(
    ("last_seen", "expected"),
    [
        ("2026-01-05T14:32:00+01:00", "2026-01-05T14:32:00+01:00"),
        (1767619920123, "1767619920123"),
        (1767619920123.0, "1767619920123"),
    ],
)
def test_last_seen_is_copied_as_text(last_seen: object, expected: str) -> None:
    assert only_event({"occupancy": True, "last_seen": last_seen}).last_seen == expected


# --- rejections ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"contact": "open"}, 'field "contact": must be true or false (got "open")'),
        ({"contact": 0}, 'field "contact": must be true or false (got 0)'),
        ({"occupancy": "true"}, 'field "occupancy": must be true or false (got "true")'),
        ({"action": 1}, 'field "action": must be a string (got 1)'),
        (
            {"fall_down_status": "fallen"},
            'field "fall_down_status": must be one of "none", "maybe_fall", "fall" (got "fallen")',
        ),
        (
            {"fall_down_status": True},
            'field "fall_down_status": must be one of "none", "maybe_fall", "fall" (got true)',
        ),
    ],
)
def test_wrong_event_attributes_are_rejected_by_name(
    payload: dict[str, object], reason: str
) -> None:
    result = rejected(json.dumps({**payload, "battery": 90}).encode())
    assert (result.code, result.reason) == (RejectReason.SCHEMA, reason)


def test_a_wrong_attribute_rejects_the_whole_message() -> None:
    # Half a message would hide the problem: the operator sees the rejection instead.
    result = rejected(b'{"occupancy": true, "contact": "open"}')
    assert result.reason == 'field "contact": must be true or false (got "open")'


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"ON", RejectReason.INVALID_JSON),
        (b"[true]", RejectReason.NOT_AN_OBJECT),
        (b"\xfe\xff", RejectReason.NOT_UTF8),
        (b"{" + b" " * 5000 + b"}", RejectReason.OVERSIZED),
    ],
)
def test_state_payload_pipeline(payload: bytes, code: RejectReason) -> None:
    assert rejected(payload).code is code


def test_empty_state_is_a_cleared_retained_message() -> None:
    result = decode(STATE, b"")
    assert isinstance(result, Ignored)


def test_bridge_messages_are_ignored_even_when_large() -> None:
    result = decode("zigbee2mqtt/bridge/devices", b"[" + b"{}," * 5000 + b"{}]")
    assert isinstance(result, Ignored)


# --- availability -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "online"),
    [
        (b"online", True),
        (b"offline", False),
        (b"offline\n", False),
        (b'{"state": "online"}', True),
        (b'{"state": "offline"}', False),
        (b'{"state": "offline", "since": 3}', False),
    ],
)
def test_availability_in_both_forms(payload: bytes, online: bool) -> None:
    assert decode(AVAILABILITY, payload) == Decoded((StatusMsg(DEVICE, online=online),))


@pytest.mark.parametrize(
    ("payload", "code", "reason"),
    [
        (
            b"maybe",
            RejectReason.INVALID_JSON,
            'availability must be online, offline or {"state": "online"|"offline"} (got "maybe")',
        ),
        (
            b"[1]",
            RejectReason.NOT_AN_OBJECT,
            'availability must be online, offline or {"state": "online"|"offline"} (got a list)',
        ),
        (
            b'{"state": "ONLINE"}',
            RejectReason.SCHEMA,
            'field "state": must be one of "online", "offline" (got "ONLINE")',
        ),
        (b"{}", RejectReason.SCHEMA, 'field "state": is required'),
        (b"\xff", RejectReason.NOT_UTF8, "payload is not UTF-8 (bad byte at offset 0)"),
    ],
)
def test_bad_availability(payload: bytes, code: RejectReason, reason: str) -> None:
    result = rejected(payload, AVAILABILITY)
    assert (result.code, result.reason) == (code, reason)


def test_empty_availability_is_a_cleared_retained_message() -> None:
    assert isinstance(decode(AVAILABILITY, b""), Ignored)
