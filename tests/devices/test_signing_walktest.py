"""Signed payloads (canonical JSON, HMAC) and walk-test checklists, without broker or database."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from devices.codecs import decode
from devices.events import Decoded, SensorEventMsg
from devices.signing import canonical_json, new_key, sign_payload, signature, verify
from devices.walktest import ObservedEvent, checklist, walk_test_progress
from hub.storage.models import DeviceType
from tests.factories import T0

KEY = bytes(range(32))


def test_the_canonical_form_sorts_keys_drops_sig_and_keeps_utf8() -> None:
    obj = {"ts": "2026-01-05T14:32:00+01:00", "type": "fall", "seq": 7, "sig": "x", "rom": "Bad ø"}
    assert canonical_json(obj) == (
        '{"rom":"Bad ø","seq":7,"ts":"2026-01-05T14:32:00+01:00","type":"fall"}'.encode()
    )


def test_a_signed_payload_verifies_and_any_change_breaks_it() -> None:
    payload = b'{"type": "button", "ts": "2026-01-05T14:32:00+01:00", "seq": 7, "action": "press"}'
    signed = json.loads(sign_payload(payload, KEY))
    body = canonical_json(signed)
    assert verify(KEY, body, signed["sig"])
    assert not verify(new_key(), body, signed["sig"])
    tampered = canonical_json({**signed, "action": "cancel"})
    assert not verify(KEY, tampered, signed["sig"])
    assert not verify(KEY, body, "not base64!")


def test_the_codec_carries_the_signature_and_what_it_covers() -> None:
    payload = sign_payload(
        b'{"type": "fall", "ts": "2026-01-05T14:32:00+01:00", "seq": 118, "confidence": 0.92}',
        KEY,
    )
    result = decode("carehub/v1/h1/d1/event", payload)
    assert isinstance(result, Decoded)
    event = result.messages[0]
    assert isinstance(event, SensorEventMsg) and event.signature is not None
    assert event.signature.body is not None
    assert verify(KEY, event.signature.body, event.signature.sig)
    unsigned = decode(
        "carehub/v1/h1/d1/event", b'{"type":"fall","ts":"2026-01-05T14:32:00Z","seq":1}'
    )
    assert isinstance(unsigned, Decoded) and unsigned.messages[0].signature is None


def test_signature_is_base64_hmac_sha256() -> None:
    # RFC 4231, test case 2
    assert signature(b"Jefe", b"what do ya want for nothing?") == (
        "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM="
    )


def _ev(kind: str, minutes: int, **data: object) -> ObservedEvent:
    return ObservedEvent(kind, data, T0 + timedelta(minutes=minutes))


def test_a_door_must_open_and_then_close() -> None:
    # a close before any open does not count; the close after the open does
    progress = walk_test_progress(
        DeviceType.DOOR_CONTACT,
        [_ev("door", 1, open=False), _ev("door", 2, open=True), _ev("door", 3, open=False)],
    )
    assert [(p.key, p.done_at) for p in progress] == [
        ("open", T0 + timedelta(minutes=2)),
        ("close", T0 + timedelta(minutes=3)),
    ]


def test_an_open_door_alone_leaves_the_close_item_open() -> None:
    progress = walk_test_progress(DeviceType.DOOR_CONTACT, [_ev("door", 1, open=True)])
    assert [p.done for p in progress] == [True, False]


@pytest.mark.parametrize(
    ("device_type", "events", "ticked"),
    [
        (DeviceType.ALARM_BUTTON, [_ev("button", 1, action="cancel")], False),
        (DeviceType.ALARM_BUTTON, [_ev("button", 1, action="press")], True),
        (DeviceType.MOTION_SENSOR, [_ev("motion", 1, motion=False)], False),
        (DeviceType.MOTION_SENSOR, [_ev("motion", 1, motion=True)], True),
        (DeviceType.FALL_SENSOR, [_ev("motion", 1, motion=True)], False),
        (DeviceType.FALL_SENSOR, [_ev("fall", 1, fall_state="fall")], True),
    ],
)
def test_each_type_has_its_item(
    device_type: DeviceType, events: list[ObservedEvent], ticked: bool
) -> None:
    progress = walk_test_progress(device_type, events)
    assert len(progress) == len(checklist(device_type)) == 1
    assert progress[0].done is ticked
