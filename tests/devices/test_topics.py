"""Topic parsing and building for the native v1 and Zigbee2MQTT protocols."""

from __future__ import annotations

import pytest

from devices.events import DeviceRef
from devices.topics import (
    MAX_ID_LENGTH,
    IgnoredTopic,
    NativeTopic,
    UnknownTopic,
    Z2MTopic,
    event_topic,
    feedback_topic,
    parse_topic,
    status_topic,
    subscriptions,
    z2m_availability_topic,
    z2m_device_topic,
)


def test_native_event_topic_names_home_and_device() -> None:
    info = parse_topic("carehub/v1/home-17/fall-1/event")
    assert info == NativeTopic("home-17", "fall-1", "event")
    assert isinstance(info, NativeTopic)
    assert info.device == DeviceRef(protocol="native", identifier="fall-1", home_id="home-17")


def test_native_status_topic() -> None:
    assert parse_topic("carehub/v1/home-17/door-1/status") == NativeTopic(
        "home-17", "door-1", "status"
    )


def test_feedback_topic_is_the_hubs_own_and_ignored() -> None:
    assert isinstance(parse_topic("carehub/v1/home-17/feedback"), IgnoredTopic)


@pytest.mark.parametrize(
    "topic",
    [
        "carehub/v1",
        "carehub/v1/",
        "carehub/v1/home-17",
        "carehub/v1/home-17/fall-1",
        "carehub/v1/home-17/fall-1/events",
        "carehub/v1/home-17/fall-1/event/extra",
    ],
)
def test_native_topics_of_the_wrong_shape_say_what_was_expected(topic: str) -> None:
    info = parse_topic(topic)
    assert isinstance(info, UnknownTopic)
    assert "carehub/v1/<home_id>/<device_id>/event" in info.reason


@pytest.mark.parametrize(
    ("topic", "named"),
    [
        ("carehub/v1//fall-1/event", "home_id is empty"),
        ("carehub/v1/home-17//event", "device_id is empty"),
        ("carehub/v1/home+/fall-1/event", "home_id must not contain"),
        ("carehub/v1/home-17/fall#/event", "device_id must not contain"),
        ("carehub/v1/home-17/fall\x00/event", "device_id contains control"),
        (f"carehub/v1/home-17/{'d' * (MAX_ID_LENGTH + 1)}/event", "device_id is longer than 64"),
    ],
)
def test_unusable_native_ids_are_refused_by_name(topic: str, named: str) -> None:
    info = parse_topic(topic)
    assert isinstance(info, UnknownTopic)
    assert named in info.reason


def test_native_id_of_exactly_the_limit_is_accepted() -> None:
    device_id = "d" * MAX_ID_LENGTH
    assert parse_topic(f"carehub/v1/h/{device_id}/event") == NativeTopic("h", device_id, "event")


def test_z2m_state_and_availability_topics() -> None:
    state = parse_topic("zigbee2mqtt/entrance_door")
    assert state == Z2MTopic("entrance_door", "state")
    assert isinstance(state, Z2MTopic)
    assert state.device == DeviceRef(protocol="zigbee2mqtt", identifier="entrance_door")
    assert parse_topic("zigbee2mqtt/entrance_door/availability") == Z2MTopic(
        "entrance_door", "availability"
    )


def test_z2m_friendly_names_may_contain_slashes() -> None:
    assert parse_topic("zigbee2mqtt/home-17/hall/door") == Z2MTopic("home-17/hall/door", "state")
    assert parse_topic("zigbee2mqtt/home-17/hall/door/availability") == Z2MTopic(
        "home-17/hall/door", "availability"
    )


@pytest.mark.parametrize(
    "topic",
    [
        "zigbee2mqtt/bridge",
        "zigbee2mqtt/bridge/state",
        "zigbee2mqtt/bridge/devices",
        "zigbee2mqtt/bridge/event",
        "zigbee2mqtt/bridge/response/device/rename",
    ],
)
def test_z2m_bridge_topics_are_ignored(topic: str) -> None:
    info = parse_topic(topic)
    assert isinstance(info, IgnoredTopic)
    assert "bridge" in info.reason


@pytest.mark.parametrize(
    "topic", ["zigbee2mqtt/lamp/set", "zigbee2mqtt/lamp/get", "zigbee2mqtt/lamp/set/state"]
)
def test_z2m_command_topics_are_ignored(topic: str) -> None:
    assert isinstance(parse_topic(topic), IgnoredTopic)


@pytest.mark.parametrize(
    "topic", ["zigbee2mqtt", "zigbee2mqtt/", "zigbee2mqtt//x", "zigbee2mqtt/a+b"]
)
def test_z2m_topics_without_a_usable_name_are_unknown(topic: str) -> None:
    info = parse_topic(topic)
    assert isinstance(info, UnknownTopic)
    assert "zigbee2mqtt/<friendly_name>" in info.reason


@pytest.mark.parametrize(
    "topic", ["homeassistant/sensor/x/config", "$SYS/broker/uptime", "carehub/v2/h/d/event", ""]
)
def test_topics_outside_both_prefixes_are_unknown(topic: str) -> None:
    info = parse_topic(topic)
    assert isinstance(info, UnknownTopic)
    assert info.reason == "topic is not under carehub/v1/ or zigbee2mqtt/"


def test_prefixes_are_configurable() -> None:
    kwargs = {"topic_prefix": "oslo/carehub/v1/", "z2m_prefix": "z2m-oslo"}
    assert parse_topic("oslo/carehub/v1/h/d/event", **kwargs) == NativeTopic("h", "d", "event")
    assert parse_topic("z2m-oslo/door", **kwargs) == Z2MTopic("door", "state")
    assert isinstance(parse_topic("z2m-oslo/bridge/state", **kwargs), IgnoredTopic)
    # The default prefixes are not special once others are configured.
    assert isinstance(parse_topic("carehub/v1/h/d/event", **kwargs), UnknownTopic)
    assert isinstance(parse_topic("zigbee2mqtt/door", **kwargs), UnknownTopic)


def test_builders_make_topics_that_parse_back() -> None:
    assert event_topic("home-17", "fall-1") == "carehub/v1/home-17/fall-1/event"
    assert status_topic("home-17", "fall-1") == "carehub/v1/home-17/fall-1/status"
    assert feedback_topic("home-17") == "carehub/v1/home-17/feedback"
    assert parse_topic(event_topic("home-17", "fall-1")) == NativeTopic(
        "home-17", "fall-1", "event"
    )
    assert parse_topic(status_topic("home-17", "fall-1")) == NativeTopic(
        "home-17", "fall-1", "status"
    )
    assert isinstance(parse_topic(feedback_topic("home-17")), IgnoredTopic)
    assert event_topic("h", "d", prefix="test/v1/") == "test/v1/h/d/event"


def test_z2m_builders_make_topics_that_parse_back() -> None:
    assert z2m_device_topic("hall/door") == "zigbee2mqtt/hall/door"
    assert z2m_availability_topic("hall/door") == "zigbee2mqtt/hall/door/availability"
    assert parse_topic(z2m_availability_topic("hall/door")) == Z2MTopic("hall/door", "availability")


@pytest.mark.parametrize(
    ("home_id", "device_id", "message"),
    [
        ("", "d", "home_id is empty"),
        ("h/x", "d", "home_id must not contain"),
        ("h", "d+", "device_id must not contain"),
        ("h", "d" * 65, "device_id is longer than 64"),
    ],
)
def test_builders_refuse_ids_that_would_not_parse(
    home_id: str, device_id: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        event_topic(home_id, device_id)


def test_z2m_builder_refuses_bad_names() -> None:
    with pytest.raises(ValueError, match="must not start or end"):
        z2m_device_topic("/door")


def test_subscriptions_cover_both_protocols_including_misspelt_channels() -> None:
    assert subscriptions() == ("carehub/v1/+/+/+", "zigbee2mqtt/#")
    assert subscriptions(topic_prefix="a/v1/", z2m_prefix="z") == ("a/v1/+/+/+", "z/#")
    # What the native filter lets through is either a device topic or a clear rejection.
    assert isinstance(parse_topic("carehub/v1/h/d/events"), UnknownTopic)
