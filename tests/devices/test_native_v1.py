"""The native v1 contract: what devices may send, and readable reasons when they get it wrong."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from devices.codecs import decode
from devices.codecs.native_v1 import encode_event, encode_status
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

EVENT = "carehub/v1/home-17/dev-1/event"
STATUS = "carehub/v1/home-17/dev-1/status"
DEVICE = DeviceRef(protocol="native", identifier="dev-1", home_id="home-17")
CET = timezone(timedelta(hours=1))
TS = "2026-01-05T14:32:00+01:00"


def body(**fields: object) -> bytes:
    return json.dumps(fields).encode()


def event(**fields: object) -> SensorEventMsg:
    result = decode(EVENT, body(**fields))
    assert isinstance(result, Decoded), result
    assert result.notes == ()
    (msg,) = result.messages
    assert isinstance(msg, SensorEventMsg)
    return msg


def rejected(topic: str, payload: bytes, **kwargs: int) -> Rejected:
    result = decode(topic, payload, **kwargs)  # type: ignore[arg-type]
    assert isinstance(result, Rejected), result
    return result


# --- accepted events ----------------------------------------------------------------------------


def test_door_event() -> None:
    msg = event(type="door", ts=TS, seq=41, open=True)
    assert msg == SensorEventMsg(
        device=DEVICE,
        kind=EventKind.DOOR,
        ts=datetime(2026, 1, 5, 14, 32, tzinfo=CET),
        seq=41,
        open=True,
    )
    assert msg.ts is not None and msg.ts.utcoffset() == timedelta(hours=1)


def test_motion_event() -> None:
    msg = event(type="motion", ts=TS, seq=0, motion=False)
    assert (msg.kind, msg.motion, msg.seq) == (EventKind.MOTION, False, 0)


@pytest.mark.parametrize("action", ["press", "cancel"])
def test_button_event(action: str) -> None:
    msg = event(type="button", ts=TS, seq=1, action=action)
    assert (msg.kind, msg.action) == (EventKind.BUTTON, action)


def test_fall_event_is_a_fall_with_optional_confidence() -> None:
    plain = event(type="fall", ts=TS, seq=7)
    assert (plain.kind, plain.fall_state, plain.confidence) == (EventKind.FALL, "fall", None)
    sure = event(type="fall", ts=TS, seq=8, confidence=0.93)
    assert (sure.fall_state, sure.confidence) == ("fall", 0.93)
    assert event(type="fall", ts=TS, seq=9, confidence=1).confidence == 1.0


def test_telemetry_on_any_event() -> None:
    msg = event(type="door", ts=TS, seq=1, open=False, battery=17, tamper=True, rssi=-71)
    assert msg.telemetry == Telemetry(battery=17, tamper=True, rssi=-71)
    assert msg.data() == {"open": False, "battery": 17, "tamper": True, "rssi": -71}


def test_optional_fields_may_be_null() -> None:
    msg = event(type="fall", ts=TS, seq=1, confidence=None, battery=None, tamper=None)
    assert msg.confidence is None
    assert msg.telemetry == Telemetry()


def test_unknown_extra_keys_are_ignored() -> None:
    msg = event(type="door", ts=TS, seq=1, open=True, firmware="2.1", motion="n/a", extra={})
    assert msg.open is True
    assert msg.motion is None  # "motion" is not a door field, so it is not read at all


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-01-05T13:32:00Z", datetime(2026, 1, 5, 13, 32, tzinfo=UTC)),
        ("2026-01-05t13:32:00z", datetime(2026, 1, 5, 13, 32, tzinfo=UTC)),
        ("2026-01-05 14:32:00+01:00", datetime(2026, 1, 5, 14, 32, tzinfo=CET)),
        ("2026-01-05T14:32:00+0100", datetime(2026, 1, 5, 14, 32, tzinfo=CET)),
        ("2026-01-05T14:32:00.250+01:00", datetime(2026, 1, 5, 14, 32, 0, 250000, tzinfo=CET)),
        # nanoseconds are cut to Python's microseconds rather than refused
        ("2026-01-05T13:32:00.123456789Z", datetime(2026, 1, 5, 13, 32, 0, 123456, tzinfo=UTC)),
    ],
)
def test_accepted_time_forms(text: str, expected: datetime) -> None:
    ts = event(type="motion", ts=text, seq=1, motion=True).ts
    assert ts == expected
    assert ts is not None and ts.utcoffset() == expected.utcoffset()


def test_status() -> None:
    result = decode(STATUS, body(online=True, battery=88, rssi=-60))
    assert result == Decoded(
        (StatusMsg(device=DEVICE, online=True, telemetry=Telemetry(battery=88, rssi=-60)),)
    )


def test_status_as_last_will_with_only_online_false() -> None:
    assert decode(STATUS, b'{"online": false}') == Decoded((StatusMsg(DEVICE, online=False),))


def test_status_may_carry_tamper_and_a_time() -> None:
    result = decode(STATUS, body(online=True, tamper=True, ts="2026-01-05T13:00:00Z"))
    assert isinstance(result, Decoded)
    (msg,) = result.messages
    assert isinstance(msg, StatusMsg)
    assert msg.telemetry.tamper is True
    assert msg.ts == datetime(2026, 1, 5, 13, 0, tzinfo=UTC)


def test_empty_status_is_a_cleared_retained_message() -> None:
    result = decode(STATUS, b"")
    assert isinstance(result, Ignored)
    assert "retained" in result.reason


# --- rejected events: each reason names the field -----------------------------------------------

BASE: dict[str, dict[str, object]] = {
    "door": {"type": "door", "ts": TS, "seq": 1, "open": True},
    "motion": {"type": "motion", "ts": TS, "seq": 1, "motion": True},
    "button": {"type": "button", "ts": TS, "seq": 1, "action": "press"},
    "fall": {"type": "fall", "ts": TS, "seq": 1},
}


@pytest.mark.parametrize(
    ("kind", "changes", "expected_reason"),
    [
        ("door", {"open": "yes"}, 'field "open": must be true or false (got "yes")'),
        ("door", {"open": 1}, 'field "open": must be true or false (got 1)'),
        ("door", {"open": "true"}, 'field "open": must be true or false (got "true")'),
        ("door", {"open": None}, 'field "open": must be true or false (got null)'),
        ("door", {"open": ...}, 'field "open": is required'),
        ("motion", {"motion": ...}, 'field "motion": is required'),
        ("motion", {"motion": [True]}, 'field "motion": must be true or false (got a list)'),
        (
            "button",
            {"action": "hold"},
            'field "action": must be one of "press", "cancel" (got "hold")',
        ),
        ("button", {"action": ...}, 'field "action": is required'),
        ("fall", {"confidence": 1.5}, 'field "confidence": must be from 0 to 1 (got 1.5)'),
        ("fall", {"confidence": -0.1}, 'field "confidence": must be from 0 to 1 (got -0.1)'),
        ("fall", {"confidence": True}, 'field "confidence": must be a number (got true)'),
        ("fall", {"confidence": "high"}, 'field "confidence": must be a number (got "high")'),
        ("fall", {"seq": True}, 'field "seq": must be a whole number (got true)'),
        ("fall", {"seq": 3.0}, 'field "seq": must be a whole number (got 3.0)'),
        ("fall", {"seq": "3"}, 'field "seq": must be a whole number (got "3")'),
        ("fall", {"seq": -1}, 'field "seq": must be 0 or more (got -1)'),
        ("fall", {"seq": 2**63}, 'field "seq": must be at most 9223372036854775807'),
        ("fall", {"seq": ...}, 'field "seq": is required'),
        ("fall", {"ts": "2026-01-05T14:32:00"}, 'field "ts": time must include a zone offset'),
        ("fall", {"ts": "yesterday"}, 'field "ts": must be an ISO 8601 time like'),
        ("fall", {"ts": "2026-01-05"}, 'field "ts": must be an ISO 8601 time like'),
        ("fall", {"ts": 1767620000}, 'field "ts": must be an ISO 8601 time like'),
        ("fall", {"ts": "2026-02-30T10:00:00Z"}, 'field "ts": is not a valid date and time'),
        ("fall", {"ts": "0001-01-01T00:00:00+01:00"}, 'field "ts": is not a valid date and time'),
        ("fall", {"ts": ...}, 'field "ts": is required'),
        ("fall", {"type": "smoke"}, 'field "type": must be one of "fall", "door", "motion", "b'),
        ("fall", {"type": "FALL"}, 'field "type": must be one of'),
        ("fall", {"type": ...}, 'field "type": is required'),
        ("door", {"battery": 101}, 'field "battery": must be from 0 to 100 (got 101)'),
        ("door", {"battery": 50.5}, 'field "battery": must be a whole number (got 50.5)'),
        ("door", {"battery": "50"}, 'field "battery": must be a whole number (got "50")'),
        ("door", {"tamper": "false"}, 'field "tamper": must be true or false (got "false")'),
        ("door", {"rssi": -300}, 'field "rssi": must be from -255 to 255 (got -300)'),
    ],
)
def test_schema_rejections_name_the_field(
    kind: str, changes: dict[str, object], expected_reason: str
) -> None:
    fields = {**BASE[kind], **changes}
    fields = {key: value for key, value in fields.items() if value is not ...}
    result = rejected(EVENT, json.dumps(fields).encode())
    assert result.code is RejectReason.SCHEMA
    assert result.reason.startswith(expected_reason), result.reason
    assert result.device == DEVICE


def test_a_naive_time_is_refused_with_a_reason_saying_so() -> None:
    result = rejected(EVENT, body(type="door", ts="2026-01-05T14:32:00", seq=1, open=True))
    assert result.reason == (
        'field "ts": time must include a zone offset, like 2026-01-05T14:32:00+01:00 '
        '(got "2026-01-05T14:32:00")'
    )


def test_all_problems_are_listed_up_to_three() -> None:
    two = rejected(EVENT, body(type="door", ts=TS, seq="x", open="x"))
    assert two.reason == (
        'field "seq": must be a whole number (got "x"); '
        'field "open": must be true or false (got "x")'
    )
    many = rejected(EVENT, body(type="door", ts=1, seq="x", open="x", battery="x", tamper=1))
    assert many.reason.count("field ") == 3
    assert many.reason.endswith("; and 2 more")


def test_long_values_are_cut_in_the_reason() -> None:
    result = rejected(EVENT, body(type="door", ts=TS, seq=1, open="y" * 500))
    assert len(result.reason) < 100
    assert '"yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy…"' in result.reason


def test_status_needs_online() -> None:
    assert rejected(STATUS, b"{}").reason == 'field "online": is required'
    assert rejected(STATUS, b'{"online": "true"}').reason == (
        'field "online": must be true or false (got "true")'
    )
    assert rejected(STATUS, body(online=True, ts="2026-01-05T10:00:00")).reason.startswith(
        'field "ts": time must include a zone offset'
    )


# --- the pipeline: size, UTF-8, JSON, object ----------------------------------------------------


def test_oversized_is_checked_first() -> None:
    result = rejected(EVENT, b"\xff" * 5000)
    assert result.code is RejectReason.OVERSIZED
    assert result.reason == "payload is 5000 bytes; the limit is 4096"
    assert result.device == DEVICE


def test_exactly_the_limit_is_not_oversized() -> None:
    padding = "x" * (4096 - len(body(type="fall", ts=TS, seq=1, pad="")))
    payload = body(type="fall", ts=TS, seq=1, pad=padding)
    assert len(payload) == 4096
    assert isinstance(decode(EVENT, payload), Decoded)
    assert rejected(EVENT, payload + b" ").code is RejectReason.OVERSIZED


def test_the_limit_is_configurable() -> None:
    payload = body(type="fall", ts=TS, seq=1)
    result = rejected(EVENT, payload, max_payload_bytes=10)
    assert result.reason == f"payload is {len(payload)} bytes; the limit is 10"


def test_not_utf8() -> None:
    result = rejected(EVENT, b'{"type": "fall\xe9"}')
    assert result.code is RejectReason.NOT_UTF8
    assert result.reason == "payload is not UTF-8 (bad byte at offset 14)"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "payload is empty"),
        (b"{", "payload is not valid JSON: Expecting property name"),
        (b"{'type': 'fall'}", "payload is not valid JSON: Expecting property name"),
        (b'{"battery": NaN}', "payload is not valid JSON: NaN is not a JSON number"),
        (b'{"battery": -Infinity}', "payload is not valid JSON: -Infinity is not a JSON number"),
        (b'{"open": true, "open": false}', 'payload is not valid JSON: key "open" appears more'),
        (b"[" * 2000 + b"]" * 2000, "payload is not valid JSON: nested too deeply"),
    ],
)
def test_invalid_json(payload: bytes, reason: str) -> None:
    result = rejected(EVENT, payload)
    assert result.code is RejectReason.INVALID_JSON
    assert result.reason.startswith(reason), result.reason


def test_a_number_too_long_for_python_is_invalid_json() -> None:
    result = rejected(EVENT, b'{"seq": ' + b"9" * 5000 + b"}", max_payload_bytes=10_000)
    assert (result.code, result.reason) == (
        RejectReason.INVALID_JSON,
        "payload is not valid JSON: a number is too long",
    )


@pytest.mark.parametrize(
    ("payload", "got"),
    [(b"[]", "a list"), (b'"fall"', "a string"), (b"42", "a number"), (b"null", "null")],
)
def test_not_an_object(payload: bytes, got: str) -> None:
    result = rejected(EVENT, payload)
    assert result.code is RejectReason.NOT_AN_OBJECT
    assert result.reason == f"payload must be a JSON object (got {got})"


def test_reasons_stay_storable_text_even_for_lone_surrogates() -> None:
    result = rejected(EVENT, b'{"type": "\\ud800", "ts": "\\u0000", "seq": 1}')
    result.reason.encode("utf-8")  # would raise on a lone surrogate
    assert "\x00" not in result.reason
    assert 'field "type"' in result.reason and 'field "ts"' in result.reason


# --- encoders -----------------------------------------------------------------------------------


def test_encoded_events_decode_to_the_same_event() -> None:
    ts = datetime(2026, 1, 5, 14, 32, 5, 120000, tzinfo=CET)
    payload = encode_event("button", ts=ts, seq=12, action="cancel", battery=55, rssi=-80)
    assert event(**json.loads(payload)) == SensorEventMsg(
        device=DEVICE,
        kind=EventKind.BUTTON,
        ts=ts,
        seq=12,
        telemetry=Telemetry(battery=55, rssi=-80),
        action="cancel",
    )


def test_encoded_status_decodes_to_the_same_status() -> None:
    payload = encode_status(False, battery=9)
    assert decode(STATUS, payload) == Decoded(
        (StatusMsg(DEVICE, online=False, telemetry=Telemetry(battery=9)),)
    )


def test_encoders_refuse_what_the_hub_would_reject() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        encode_event(EventKind.DOOR, ts=datetime(2026, 1, 5, 14, 32), seq=1, open=True)  # noqa: DTZ001
    with pytest.raises(ValueError, match='field "open": is required'):
        encode_event(EventKind.DOOR, ts=datetime(2026, 1, 5, tzinfo=UTC), seq=1)
    with pytest.raises(ValueError, match='field "battery": must be from 0 to 100'):
        encode_status(True, battery=120)


def test_encoder_writes_odd_historic_offsets_in_utc() -> None:
    lmt = timezone(timedelta(minutes=43, seconds=20))
    ts = datetime(2026, 1, 5, 12, 0, tzinfo=lmt)
    payload = json.loads(encode_event("motion", ts=ts, seq=1, motion=True))
    assert payload["ts"] == "2026-01-05T11:16:40+00:00"
