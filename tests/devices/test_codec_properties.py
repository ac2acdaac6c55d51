"""Properties of ``decode``: it never raises, and both protocols mean the same thing by an event."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from devices.codecs import decode
from devices.codecs.native_v1 import encode_event
from devices.events import (
    Decoded,
    DecodeResult,
    DeviceRef,
    EventKind,
    Ignored,
    Rejected,
    RejectReason,
    SensorEventMsg,
    StatusMsg,
)
from devices.topics import IgnoredTopic, NativeTopic, UnknownTopic, Z2MTopic, parse_topic

REAL_KEYS = [
    "type",
    "ts",
    "seq",
    "open",
    "motion",
    "action",
    "confidence",
    "battery",
    "tamper",
    "rssi",
    "online",
    "contact",
    "occupancy",
    "fall_down_status",
    "linkquality",
    "last_seen",
    "state",
]
PLAUSIBLE = [
    "fall",
    "door",
    "motion",
    "button",
    "press",
    "cancel",
    "single",
    "double",
    "sos",
    "release",
    "none",
    "maybe_fall",
    "online",
    "offline",
    "2026-01-05T14:32:00+01:00",
    "2026-01-05T14:32:00",
    "2026-01-05T14:32:00.123456789Z",
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-01:00",
    "",
]

ids = st.text(
    st.characters(codec="utf-8", exclude_characters="/"), min_size=0, max_size=70
) | st.sampled_from(["home-17", "dev-1", "hall", "+", "#", "bridge", "set", "availability"])
topics = st.one_of(
    st.builds(
        "carehub/v1/{}/{}/{}".format, ids, ids, st.sampled_from(["event", "status", "feedback"])
    ),
    st.builds("carehub/v1/{}/feedback".format, ids),
    st.builds("zigbee2mqtt/{}".format, ids),
    st.builds("zigbee2mqtt/{}/{}".format, ids, ids),
    st.builds("zigbee2mqtt/{}/availability".format, ids),
    st.builds("zigbee2mqtt/bridge/{}".format, ids),
    st.text(max_size=40),
)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(PLAUSIBLE),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
mixed_objects = st.dictionaries(
    st.sampled_from(REAL_KEYS) | st.text(max_size=8),
    json_values | st.sampled_from(PLAUSIBLE) | st.integers(-300, 300),
    max_size=10,
)
zones = st.sampled_from(
    [
        UTC,
        timezone(timedelta(hours=1)),
        timezone(timedelta(hours=-9, minutes=-30)),
        ZoneInfo("Europe/Oslo"),
    ]
)
aware_times = st.datetimes(
    min_value=datetime(1970, 1, 2),  # noqa: DTZ001 - hypothesis bounds are naive by design
    max_value=datetime(2200, 1, 1),  # noqa: DTZ001
    timezones=zones,
)


def assert_well_formed(topic: str, payload: bytes, result: DecodeResult) -> None:
    """The invariants every decode result keeps, whatever came in."""
    assert isinstance(result, Decoded | Rejected | Ignored)
    info = parse_topic(topic)
    if isinstance(result, Rejected):
        assert result.code is not RejectReason.INTERNAL_ERROR, result.reason
        assert result.reason and len(result.reason) < 500
        assert "\x00" not in result.reason
        result.reason.encode("utf-8")  # storable text, even from lone-surrogate escapes
        if isinstance(info, UnknownTopic):
            assert result.code is RejectReason.UNKNOWN_TOPIC
        else:
            assert isinstance(info, NativeTopic | Z2MTopic)
            assert result.device == info.device
        if len(payload) > 4096 and isinstance(info, NativeTopic | Z2MTopic):
            assert result.code is RejectReason.OVERSIZED
    elif isinstance(result, Ignored):
        assert result.reason
        assert isinstance(info, IgnoredTopic) or not payload
    else:
        assert isinstance(info, NativeTopic | Z2MTopic)
        assert len(payload) <= 4096
        assert result.messages, "a decoded message always says which device was heard"
        if isinstance(info, NativeTopic):
            assert len(result.messages) == 1
        for msg in result.messages:
            assert msg.device == info.device
            if isinstance(msg, SensorEventMsg) and info.device.protocol == "native":
                assert msg.ts is not None and msg.ts.utcoffset() is not None
                assert msg.seq is not None and 0 <= msg.seq < 2**63
            if isinstance(msg, SensorEventMsg) and info.device.protocol == "zigbee2mqtt":
                assert (msg.ts, msg.seq) == (None, None)
            battery = msg.telemetry.battery
            assert battery is None or (isinstance(battery, int) and 0 <= battery <= 100)
        for note in result.notes:
            note.encode("utf-8")


@given(topic=topics, payload=st.binary(max_size=5000))
def test_arbitrary_bytes_never_raise(topic: str, payload: bytes) -> None:
    assert_well_formed(topic, payload, decode(topic, payload))


@given(topic=topics, value=json_values)
def test_arbitrary_json_values_never_raise(topic: str, value: object) -> None:
    payload = json.dumps(value).encode()
    assert_well_formed(topic, payload, decode(topic, payload))


@given(topic=topics, obj=mixed_objects)
def test_objects_mixing_real_keys_and_random_values_never_raise(
    topic: str, obj: dict[str, object]
) -> None:
    payload = json.dumps(obj).encode()
    assert_well_formed(topic, payload, decode(topic, payload))


@given(topic=st.text(max_size=300), prefix=st.text(max_size=12), z2m=st.text(max_size=12))
def test_any_topic_and_prefix_never_raise(topic: str, prefix: str, z2m: str) -> None:
    result = decode(topic, b"{}", topic_prefix=prefix, z2m_prefix=z2m)
    assert isinstance(result, Decoded | Rejected | Ignored)
    if isinstance(result, Rejected):
        assert result.code is not RejectReason.INTERNAL_ERROR


# --- both protocols tell the same story ---------------------------------------------------------

NATIVE_TOPIC = "carehub/v1/home-17/{}/event"
Z2M_TOPIC = "zigbee2mqtt/{}"


def comparable(msg: SensorEventMsg) -> SensorEventMsg:
    """The event without what is specific to a protocol: device ref, ts, seq, last_seen."""
    assert msg.device.identifier in ("entrance", "radar", "pendant", "bedroom")
    return dataclasses.replace(
        msg, device=DeviceRef(protocol="native", identifier="-"), ts=None, seq=None, last_seen=None
    )


def same_instant(decoded: datetime | None, sent: datetime) -> bool:
    # Compared in UTC: PEP 495 makes == between zones False for ambiguous (DST fall-back) times.
    return decoded is not None and decoded.astimezone(UTC) == sent.astimezone(UTC)


def one_event(result: DecodeResult) -> SensorEventMsg:
    assert isinstance(result, Decoded), result
    (msg,) = result.messages
    assert isinstance(msg, SensorEventMsg)
    return msg


telemetry = st.fixed_dictionaries(
    {},
    optional={
        "battery": st.integers(0, 100),
        "tamper": st.booleans(),
        "rssi": st.integers(0, 255),
    },
)


def z2m_payload(attributes: dict[str, object], tel: Mapping[str, object]) -> bytes:
    body = {**attributes, "last_seen": "2026-01-05T13:32:00.000Z"}
    for key, value in tel.items():
        body["linkquality" if key == "rssi" else key] = value
    return json.dumps(body).encode()


@given(contact=st.booleans(), tel=telemetry, ts=aware_times, seq=st.integers(0, 2**63 - 1))
def test_z2m_door_sensor_and_native_door_agree(
    contact: bool, tel: dict[str, int | bool], ts: datetime, seq: int
) -> None:
    z2m = one_event(decode(Z2M_TOPIC.format("entrance"), z2m_payload({"contact": contact}, tel)))
    native = one_event(
        decode(
            NATIVE_TOPIC.format("entrance"),
            encode_event(EventKind.DOOR, ts=ts, seq=seq, open=not contact, **tel),  # type: ignore[arg-type]
        )
    )
    assert comparable(z2m) == comparable(native)
    assert z2m.open is (not contact)
    assert native.seq == seq
    assert same_instant(native.ts, ts)
    assert z2m.last_seen == "2026-01-05T13:32:00.000Z"


@given(tel=telemetry, ts=aware_times, seq=st.integers(0, 2**63 - 1))
def test_z2m_fall_radar_and_native_fall_sensor_agree(
    tel: dict[str, int | bool], ts: datetime, seq: int
) -> None:
    z2m = one_event(
        decode(Z2M_TOPIC.format("radar"), z2m_payload({"fall_down_status": "fall"}, tel))
    )
    native = one_event(
        decode(NATIVE_TOPIC.format("radar"), encode_event("fall", ts=ts, seq=seq, **tel))  # type: ignore[arg-type]
    )
    assert comparable(z2m) == comparable(native)
    assert (native.kind, native.fall_state) == (EventKind.FALL, "fall")


@given(
    pair=st.sampled_from([("single", "press"), ("sos", "press"), ("cancel", "cancel")]),
    tel=telemetry,
    ts=aware_times,
)
def test_z2m_button_and_native_button_agree(
    pair: tuple[str, str], tel: dict[str, int | bool], ts: datetime
) -> None:
    z2m_action, native_action = pair
    z2m = one_event(decode(Z2M_TOPIC.format("pendant"), z2m_payload({"action": z2m_action}, tel)))
    native = one_event(
        decode(
            NATIVE_TOPIC.format("pendant"),
            encode_event("button", ts=ts, seq=1, action=native_action, **tel),  # type: ignore[arg-type]
        )
    )
    assert comparable(z2m) == comparable(native)


@given(occupancy=st.booleans(), tel=telemetry, ts=aware_times)
def test_z2m_occupancy_and_native_motion_agree(
    occupancy: bool, tel: dict[str, int | bool], ts: datetime
) -> None:
    z2m = one_event(decode(Z2M_TOPIC.format("bedroom"), z2m_payload({"occupancy": occupancy}, tel)))
    native = one_event(
        decode(
            NATIVE_TOPIC.format("bedroom"),
            encode_event("motion", ts=ts, seq=5, motion=occupancy, **tel),  # type: ignore[arg-type]
        )
    )
    assert comparable(z2m) == comparable(native)


@given(
    kind=st.sampled_from(list(EventKind)),
    flag=st.booleans(),
    confidence=st.none() | st.floats(0, 1),
    tel=telemetry,
    ts=aware_times,
    seq=st.integers(0, 2**63 - 1),
)
def test_native_encode_then_decode_round_trips(
    kind: EventKind,
    flag: bool,
    confidence: float | None,
    tel: dict[str, int | bool],
    ts: datetime,
    seq: int,
) -> None:
    extras: dict[EventKind, dict[str, object]] = {
        EventKind.DOOR: {"open": flag},
        EventKind.MOTION: {"motion": flag},
        EventKind.BUTTON: {"action": "press" if flag else "cancel"},
        EventKind.FALL: {"confidence": confidence},
    }
    extra = extras[kind]
    msg = one_event(
        decode(NATIVE_TOPIC.format("dev"), encode_event(kind, ts=ts, seq=seq, **extra, **tel))  # type: ignore[arg-type]
    )
    assert (msg.kind, msg.seq) == (kind, seq)
    assert same_instant(msg.ts, ts)
    assert msg.ts is not None and msg.ts.utcoffset() == ts.utcoffset()
    assert msg.data() == {
        **({"fall_state": "fall"} if kind is EventKind.FALL else {}),
        **{k: v for k, v in extra.items() if v is not None},
        **tel,
    }


def test_status_messages_from_both_protocols_agree_on_offline() -> None:
    native = decode("carehub/v1/home-17/pendant/status", b'{"online": false}')
    z2m = decode("zigbee2mqtt/pendant/availability", b"offline")
    assert isinstance(native, Decoded) and isinstance(z2m, Decoded)
    (a,) = native.messages
    (b,) = z2m.messages
    assert isinstance(a, StatusMsg) and isinstance(b, StatusMsg)
    assert (a.online, a.telemetry) == (b.online, b.telemetry) == (False, b.telemetry)


# --- the examples in docs/mqtt.md are what the decoder accepts ----------------------------------

DOC = Path(__file__).resolve().parents[2] / "docs" / "mqtt.md"


def doc_json_examples() -> list[dict[str, object]]:
    blocks = re.findall(r"```json\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
    return [json.loads(line) for block in blocks for line in block.splitlines() if line.strip()]


def test_every_json_example_in_the_contract_doc_decodes() -> None:
    examples = doc_json_examples()
    assert len(examples) >= 12
    for example in examples:
        payload = json.dumps(example).encode()
        if "type" in example:
            topic = "carehub/v1/home-17/dev-1/event"
        elif "online" in example:
            topic = "carehub/v1/home-17/dev-1/status"
        elif "state" in example:
            topic = "zigbee2mqtt/hall/door/availability"
        else:
            topic = "zigbee2mqtt/hall/door"
        result = decode(topic, payload)
        assert isinstance(result, Decoded), (example, result)
        assert result.notes == (), (example, result.notes)
