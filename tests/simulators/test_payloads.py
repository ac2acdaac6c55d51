"""The simulators' payloads are exactly the external contract, and the hub's codecs read them."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from devices.events import Decoded, EventKind, SensorEventMsg, StatusMsg
from hub.clock import FakeClock
from hub.storage.models import DeviceType, Protocol
from simulators import payloads
from simulators.devices import UnsupportedEvent, VirtualDevice
from simulators.payloads import MqttMessage

OSLO = ZoneInfo("Europe/Oslo")
TS = datetime(2026, 1, 5, 14, 32, 7, tzinfo=OSLO)


def body(message: MqttMessage) -> object:
    return json.loads(message.payload.decode("utf-8"))


# --- native v1 events ---------------------------------------------------------------------------


def test_native_fall_is_the_contract_json_on_the_event_topic() -> None:
    message = payloads.native_fall("h1", "d1", ts=TS, seq=7)

    assert message.topic == "carehub/v1/h1/d1/event"
    assert message.retain is False
    assert body(message) == {"type": "fall", "ts": "2026-01-05T14:32:07+01:00", "seq": 7}


def test_native_fall_carries_confidence_battery_and_tamper_when_given() -> None:
    message = payloads.native_fall(
        "h1", "d1", ts=TS, seq=8, confidence=0.87, battery=64, tamper=False
    )

    assert body(message) == {
        "type": "fall",
        "ts": "2026-01-05T14:32:07+01:00",
        "seq": 8,
        "confidence": 0.87,
        "battery": 64,
        "tamper": False,
    }


@pytest.mark.parametrize("is_open", [True, False])
def test_native_door(is_open: bool) -> None:
    message = payloads.native_door("h1", "door", open=is_open, ts=TS, seq=1)

    assert body(message) == {
        "type": "door",
        "ts": "2026-01-05T14:32:07+01:00",
        "seq": 1,
        "open": is_open,
    }


@pytest.mark.parametrize("motion", [True, False])
def test_native_motion(motion: bool) -> None:
    message = payloads.native_motion("h1", "pir", motion=motion, ts=TS, seq=2, tamper=True)

    assert body(message) == {
        "type": "motion",
        "ts": "2026-01-05T14:32:07+01:00",
        "seq": 2,
        "motion": motion,
        "tamper": True,
    }


@pytest.mark.parametrize("action", ["press", "cancel"])
def test_native_button(action: payloads.ButtonAction) -> None:
    message = payloads.native_button("h1", "btn", action=action, ts=TS, seq=3, battery=100)

    assert body(message) == {
        "type": "button",
        "ts": "2026-01-05T14:32:07+01:00",
        "seq": 3,
        "action": action,
        "battery": 100,
    }


def test_ts_keeps_the_zone_it_was_given() -> None:
    utc = payloads.native_fall("h1", "d1", ts=datetime(2026, 7, 1, 12, 0, tzinfo=UTC), seq=1)
    summer = payloads.native_fall("h1", "d1", ts=datetime(2026, 7, 1, 14, 0, tzinfo=OSLO), seq=1)

    assert body(utc) == {"type": "fall", "ts": "2026-07-01T12:00:00+00:00", "seq": 1}
    assert body(summer) == {"type": "fall", "ts": "2026-07-01T14:00:00+02:00", "seq": 1}


@pytest.mark.parametrize(
    ("kwargs", "complaint"),
    [
        ({"ts": datetime(2026, 1, 5, 12, 0)}, "timezone-aware"),  # noqa: DTZ001 (the point)
        ({"seq": -1}, "seq must not be negative"),
        ({"seq": True}, "seq must be an integer"),
        ({"confidence": 1.2}, "confidence must be a number in 0..1"),
        ({"battery": 101}, "battery must be 0..100"),
        ({"tamper": "yes"}, "tamper must be true or false"),
    ],
)
def test_builders_refuse_values_outside_the_contract(
    kwargs: dict[str, object], complaint: str
) -> None:
    arguments: dict[str, object] = {"ts": TS, "seq": 1, **kwargs}
    with pytest.raises(ValueError, match=complaint):
        payloads.native_fall("h1", "d1", **arguments)  # type: ignore[arg-type]


def test_topic_segments_cannot_smuggle_wildcards_or_levels() -> None:
    with pytest.raises(ValueError, match="device_id"):
        payloads.native_fall("h1", "d1/event", ts=TS, seq=1)
    with pytest.raises(ValueError, match="home_id"):
        payloads.native_status("+", "d1", online=True)


# --- native status ------------------------------------------------------------------------------


def test_native_status_is_retained_on_the_status_topic() -> None:
    message = payloads.native_status("h1", "d1", online=True, battery=55, rssi=-67)

    assert message.topic == "carehub/v1/h1/d1/status"
    assert message.retain is True
    assert body(message) == {"online": True, "battery": 55, "rssi": -67}


def test_native_status_minimal_offline() -> None:
    assert body(payloads.native_status("h1", "d1", online=False)) == {"online": False}


# --- Zigbee2MQTT --------------------------------------------------------------------------------


def test_z2m_door_contact_false_means_open() -> None:
    opened = payloads.z2m_door("front-door", open=True, battery=91, linkquality=120)
    closed = payloads.z2m_door("front-door", open=False, battery=91, linkquality=120)

    assert opened.topic == "zigbee2mqtt/front-door"
    assert opened.retain is False
    assert body(opened) == {"contact": False, "battery": 91, "linkquality": 120}
    assert body(closed) == {"contact": True, "battery": 91, "linkquality": 120}


def test_z2m_motion_is_occupancy() -> None:
    message = payloads.z2m_motion("hall-pir", occupancy=True, battery=80, linkquality=99)

    assert body(message) == {"occupancy": True, "battery": 80, "linkquality": 99}


def test_z2m_button_press_is_single_and_cancel_is_explicit() -> None:
    press = payloads.z2m_button("pendant", action="press", battery=100, linkquality=50)
    cancel = payloads.z2m_button("pendant", action="cancel")

    assert body(press) == {"action": "single", "battery": 100, "linkquality": 50}
    assert body(cancel) == {"action": "cancel"}


@pytest.mark.parametrize("status", ["none", "maybe_fall", "fall"])
def test_z2m_tuya_fall_radar(status: payloads.FallDownStatus) -> None:
    message = payloads.z2m_fall("radar", status=status)

    assert body(message) == {"fall_down_status": status}


def test_z2m_availability_plain_and_json() -> None:
    plain = payloads.z2m_availability("front-door", online=False)
    as_json = payloads.z2m_availability("front-door", online=True, fmt="json")

    assert plain.topic == as_json.topic == "zigbee2mqtt/front-door/availability"
    assert plain.retain and as_json.retain
    assert plain.payload == b"offline"
    assert body(as_json) == {"state": "online"}


# --- VirtualDevice ------------------------------------------------------------------------------


def make(
    device_type: DeviceType,
    protocol: Protocol = Protocol.NATIVE,
    clock: FakeClock | None = None,
    **kwargs: object,
) -> VirtualDevice:
    return VirtualDevice(
        identifier=f"{device_type.value}-1",
        home_id="h1",
        type=device_type,
        protocol=protocol,
        clock=clock or FakeClock(),
        **kwargs,  # type: ignore[arg-type]
    )


def test_seq_increments_per_event_and_ts_comes_from_the_clock() -> None:
    clock = FakeClock(datetime(2026, 1, 5, 13, 0, tzinfo=UTC))
    pir = make(DeviceType.MOTION_SENSOR, clock=clock, battery=77, tz=OSLO)

    first = body(pir.motion(detected=True))
    clock.advance(timedelta(seconds=30))
    second = body(pir.motion(detected=False))
    third = body(pir.motion(detected=True))

    assert first == {
        "type": "motion",
        "ts": "2026-01-05T14:00:00+01:00",
        "seq": 1,
        "motion": True,
        "battery": 77,
    }
    assert isinstance(second, dict) and isinstance(third, dict)
    assert (second["seq"], third["seq"]) == (2, 3)
    assert second["ts"] == "2026-01-05T14:00:30+01:00"
    assert pir.seq == 3


def test_status_is_not_an_event_and_does_not_use_a_seq() -> None:
    button = make(DeviceType.ALARM_BUTTON, battery=40, rssi=-70)

    assert body(button.status()) == {"online": True, "battery": 40, "rssi": -70}
    assert body(button.will()) == {"online": False}
    assert button.will().retain
    assert button.seq == 0


@pytest.mark.parametrize(
    ("device_type", "wrong"),
    [
        (DeviceType.DOOR_CONTACT, lambda d: d.fall()),
        (DeviceType.MOTION_SENSOR, lambda d: d.button()),
        (DeviceType.ALARM_BUTTON, lambda d: d.door(open=True)),
        (DeviceType.FALL_SENSOR, lambda d: d.door(open=False)),
    ],
)
def test_a_device_refuses_events_its_type_cannot_produce(
    device_type: DeviceType, wrong: Callable[[VirtualDevice], MqttMessage]
) -> None:
    device = make(device_type)

    with pytest.raises(UnsupportedEvent, match=f"is a {device_type.value} and cannot report"):
        wrong(device)
    assert device.seq == 0  # a refused event uses no seq


def test_zigbee2mqtt_devices_speak_zigbee2mqtt() -> None:
    door = make(DeviceType.DOOR_CONTACT, Protocol.ZIGBEE2MQTT, battery=88, linkquality=150)
    radar = make(DeviceType.FALL_SENSOR, Protocol.ZIGBEE2MQTT, battery=None)

    assert door.door(open=True) == MqttMessage(
        "zigbee2mqtt/door_contact-1", b'{"contact":false,"battery":88,"linkquality":150}'
    )
    assert body(radar.fall(status="maybe_fall")) == {"fall_down_status": "maybe_fall"}
    assert door.status() == MqttMessage(
        "zigbee2mqtt/door_contact-1/availability", b"online", retain=True
    )
    assert door.seq == 0
    with pytest.raises(UnsupportedEvent, match="no confidence"):
        radar.fall(confidence=0.9)


def test_drain_battery_never_goes_below_zero() -> None:
    button = make(DeviceType.ALARM_BUTTON, battery=2)

    assert button.drain_battery(5) == 0


# --- round trip through the hub's decoder -------------------------------------------------------


def decode_one(message: MqttMessage) -> SensorEventMsg | StatusMsg:
    codecs = pytest.importorskip("devices.codecs")
    result = codecs.decode(message.topic, message.payload)
    assert isinstance(result, Decoded), result
    assert len(result.messages) == 1, result
    decoded = result.messages[0]
    assert isinstance(decoded, SensorEventMsg | StatusMsg)
    return decoded


def test_native_events_round_trip_through_the_codec() -> None:
    clock = FakeClock(datetime(2026, 1, 5, 13, 32, tzinfo=UTC))
    fall = make(DeviceType.FALL_SENSOR, clock=clock, battery=64, tz=OSLO)

    event = decode_one(fall.fall(confidence=0.87))

    assert isinstance(event, SensorEventMsg)
    assert event.device.protocol == "native"
    assert (event.device.home_id, event.device.identifier) == ("h1", "fall_sensor-1")
    assert event.kind is EventKind.FALL
    assert event.ts == clock.now()
    assert event.seq == 1
    assert event.confidence == 0.87
    assert event.telemetry.battery == 64

    door = make(DeviceType.DOOR_CONTACT, clock=clock, tamper=True)
    opened = decode_one(door.door(open=True))
    assert isinstance(opened, SensorEventMsg)
    assert (opened.kind, opened.open, opened.telemetry.tamper) == (EventKind.DOOR, True, True)

    pir = make(DeviceType.MOTION_SENSOR, clock=clock)
    quiet = decode_one(pir.motion(detected=False))
    assert isinstance(quiet, SensorEventMsg)
    assert (quiet.kind, quiet.motion) == (EventKind.MOTION, False)

    button = make(DeviceType.ALARM_BUTTON, clock=clock)
    for action in ("press", "cancel"):
        pressed = decode_one(button.button(action=action))
        assert isinstance(pressed, SensorEventMsg)
        assert (pressed.kind, pressed.action) == (EventKind.BUTTON, action)


def test_native_status_and_will_round_trip_through_the_codec() -> None:
    sensor = make(DeviceType.DOOR_CONTACT, battery=15, rssi=-80)

    online = decode_one(sensor.status())
    offline = decode_one(sensor.will())

    assert isinstance(online, StatusMsg) and isinstance(offline, StatusMsg)
    assert (online.online, online.telemetry.battery, online.telemetry.rssi) == (True, 15, -80)
    assert offline.online is False


def test_zigbee2mqtt_payloads_round_trip_through_the_codec() -> None:
    def z2m(device_type: DeviceType) -> VirtualDevice:
        return make(device_type, Protocol.ZIGBEE2MQTT, battery=70, linkquality=99)

    opened = decode_one(z2m(DeviceType.DOOR_CONTACT).door(open=True))
    assert isinstance(opened, SensorEventMsg)
    assert opened.device.protocol == "zigbee2mqtt"
    assert opened.device.identifier == "door_contact-1"
    assert (opened.kind, opened.open, opened.ts, opened.seq) == (EventKind.DOOR, True, None, None)
    assert (opened.telemetry.battery, opened.telemetry.rssi) == (70, 99)

    moving = decode_one(z2m(DeviceType.MOTION_SENSOR).motion(detected=True))
    assert isinstance(moving, SensorEventMsg)
    assert (moving.kind, moving.motion) == (EventKind.MOTION, True)

    button = z2m(DeviceType.ALARM_BUTTON)
    press = decode_one(button.button(action="press"))
    cancel = decode_one(button.button(action="cancel"))
    assert isinstance(press, SensorEventMsg) and isinstance(cancel, SensorEventMsg)
    assert (press.action, cancel.action) == ("press", "cancel")

    radar = z2m(DeviceType.FALL_SENSOR)
    for status in ("fall", "maybe_fall"):
        fell = decode_one(radar.fall(status=status))
        assert isinstance(fell, SensorEventMsg)
        assert (fell.kind, fell.fall_state) == (EventKind.FALL, status)

    for fmt in ("plain", "json"):
        device = make(DeviceType.DOOR_CONTACT, Protocol.ZIGBEE2MQTT, availability_format=fmt)
        up, down = decode_one(device.status()), decode_one(device.will())
        assert isinstance(up, StatusMsg) and isinstance(down, StatusMsg)
        assert (up.online, down.online) == (True, False)


def test_a_radar_clearing_is_no_event() -> None:
    codecs = pytest.importorskip("devices.codecs")
    radar = make(DeviceType.FALL_SENSOR, Protocol.ZIGBEE2MQTT, battery=None)
    clear = radar.fall(status="none")

    result = codecs.decode(clear.topic, clear.payload)

    assert isinstance(result, Decoded)
    assert not any(isinstance(m, SensorEventMsg) for m in result.messages)
