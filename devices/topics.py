"""MQTT topics of both device protocols: parse what arrives, build what devices and hub publish."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from devices.events import DeviceRef

DEFAULT_TOPIC_PREFIX = "carehub/v1"
DEFAULT_Z2M_PREFIX = "zigbee2mqtt"

# Native <home_id> and <device_id> are database keys of 64 characters (Home.id, Device.id).
MAX_ID_LENGTH = 64
# Zigbee2MQTT friendly names are stored in Device.z2m_friendly_name (128 characters).
MAX_FRIENDLY_NAME_LENGTH = 128

NativeChannel = Literal["event", "status"]
Z2MChannel = Literal["state", "availability"]

_NATIVE_CHANNELS: tuple[NativeChannel, ...] = ("event", "status")
_Z2M_COMMAND_WORDS = frozenset({"set", "get"})


@dataclass(frozen=True, slots=True)
class NativeTopic:
    """``<prefix>/<home_id>/<device_id>/event`` or ``.../status``."""

    home_id: str
    device_id: str
    channel: NativeChannel

    @property
    def device(self) -> DeviceRef:
        return DeviceRef(protocol="native", identifier=self.device_id, home_id=self.home_id)


@dataclass(frozen=True, slots=True)
class Z2MTopic:
    """``<z2m_prefix>/<friendly_name>`` (state) or ``<z2m_prefix>/<friendly_name>/availability``."""

    friendly_name: str
    channel: Z2MChannel

    @property
    def device(self) -> DeviceRef:
        return DeviceRef(protocol="zigbee2mqtt", identifier=self.friendly_name)


@dataclass(frozen=True, slots=True)
class IgnoredTopic:
    """A topic the hub may see but has nothing to do with (bridge chatter, commands, feedback)."""

    reason: str


@dataclass(frozen=True, slots=True)
class UnknownTopic:
    """A topic that does not follow either protocol; ``reason`` says what was expected."""

    reason: str


TopicInfo = NativeTopic | Z2MTopic | IgnoredTopic | UnknownTopic


def _normalise_prefix(prefix: str) -> str:
    return prefix.strip("/")


def _under(topic: str, prefix: str) -> str | None:
    """The part of ``topic`` after ``prefix/``, or None when the topic is not under the prefix."""
    if not prefix:
        return None
    if topic == prefix:
        return ""
    if topic.startswith(prefix + "/"):
        return topic[len(prefix) + 1 :]
    return None


def id_problem(value: str, what: str, *, max_length: int = MAX_ID_LENGTH) -> str | None:
    """Why ``value`` cannot be a native ``<home_id>``/``<device_id>`` (None when it can)."""
    if not value:
        return f"{what} is empty"
    if len(value) > max_length:
        return f"{what} is longer than {max_length} characters"
    if "/" in value or "+" in value or "#" in value:
        return f"{what} must not contain '/', '+' or '#'"
    if not value.isprintable():
        return f"{what} contains control or invisible characters"
    return None


def friendly_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a Zigbee2MQTT friendly name here (None when it can)."""
    if not name:
        return "friendly name is empty"
    if len(name) > MAX_FRIENDLY_NAME_LENGTH:
        return f"friendly name is longer than {MAX_FRIENDLY_NAME_LENGTH} characters"
    if name.startswith("/") or name.endswith("/"):
        return "friendly name must not start or end with '/'"
    if "+" in name or "#" in name:
        return "friendly name must not contain '+' or '#'"
    if not name.isprintable():
        return "friendly name contains control or invisible characters"
    return None


def _parse_native(rest: str, prefix: str) -> TopicInfo:
    parts = rest.split("/")
    if len(parts) == 2 and parts[1] == "feedback":
        return IgnoredTopic("hub-to-home feedback topic")
    if len(parts) != 3 or parts[2] not in _NATIVE_CHANNELS:
        return UnknownTopic(f"expected {prefix}/<home_id>/<device_id>/event or .../status")
    home_id, device_id, channel = parts
    for value, what in ((home_id, "home_id"), (device_id, "device_id")):
        problem = id_problem(value, what)
        if problem is not None:
            return UnknownTopic(f"topic {problem}")
    return NativeTopic(home_id, device_id, "event" if channel == "event" else "status")


def _parse_z2m(rest: str, prefix: str) -> TopicInfo:
    if rest == "bridge" or rest.startswith("bridge/"):
        return IgnoredTopic("Zigbee2MQTT bridge topic")
    parts = rest.split("/")
    if parts[-1] in _Z2M_COMMAND_WORDS or (len(parts) >= 2 and parts[-2] in _Z2M_COMMAND_WORDS):
        return IgnoredTopic("Zigbee2MQTT command topic (set/get)")
    channel: Z2MChannel = "state"
    name = rest
    if len(parts) >= 2 and parts[-1] == "availability":
        channel = "availability"
        name = "/".join(parts[:-1])
    problem = friendly_name_problem(name)
    if problem is not None:
        return UnknownTopic(
            f"expected {prefix}/<friendly_name> or {prefix}/<friendly_name>/availability "
            f"({problem})"
        )
    return Z2MTopic(name, channel)


def parse_topic(
    topic: str,
    *,
    topic_prefix: str = DEFAULT_TOPIC_PREFIX,
    z2m_prefix: str = DEFAULT_Z2M_PREFIX,
) -> TopicInfo:
    """Say which device and channel a topic belongs to. Never raises."""
    native = _normalise_prefix(topic_prefix)
    z2m = _normalise_prefix(z2m_prefix)
    native_rest = _under(topic, native)
    z2m_rest = _under(topic, z2m)
    # If one prefix is nested in the other, the longer (more specific) one wins.
    if native_rest is not None and (z2m_rest is None or len(native) >= len(z2m)):
        return _parse_native(native_rest, native)
    if z2m_rest is not None:
        return _parse_z2m(z2m_rest, z2m)
    return UnknownTopic(f"topic is not under {native}/ or {z2m}/")


def _checked_native(home_id: str, device_id: str | None = None) -> None:
    problems = [id_problem(home_id, "home_id")]
    if device_id is not None:
        problems.append(id_problem(device_id, "device_id"))
    for problem in problems:
        if problem is not None:
            raise ValueError(problem)


def event_topic(home_id: str, device_id: str, *, prefix: str = DEFAULT_TOPIC_PREFIX) -> str:
    """The topic a native device publishes its events on (QoS 1, not retained)."""
    _checked_native(home_id, device_id)
    return f"{_normalise_prefix(prefix)}/{home_id}/{device_id}/event"


def status_topic(home_id: str, device_id: str, *, prefix: str = DEFAULT_TOPIC_PREFIX) -> str:
    """The topic of a native device's status and last will (QoS 1, retained)."""
    _checked_native(home_id, device_id)
    return f"{_normalise_prefix(prefix)}/{home_id}/{device_id}/status"


def feedback_topic(home_id: str, *, prefix: str = DEFAULT_TOPIC_PREFIX) -> str:
    """The hub-to-home topic carrying the state of the home's open alarm."""
    _checked_native(home_id)
    return f"{_normalise_prefix(prefix)}/{home_id}/feedback"


def z2m_device_topic(friendly_name: str, *, prefix: str = DEFAULT_Z2M_PREFIX) -> str:
    """The topic Zigbee2MQTT publishes a device's state on."""
    problem = friendly_name_problem(friendly_name)
    if problem is not None:
        raise ValueError(problem)
    return f"{_normalise_prefix(prefix)}/{friendly_name}"


def z2m_availability_topic(friendly_name: str, *, prefix: str = DEFAULT_Z2M_PREFIX) -> str:
    """The topic Zigbee2MQTT publishes a device's availability on."""
    return z2m_device_topic(friendly_name, prefix=prefix) + "/availability"


def subscriptions(
    *, topic_prefix: str = DEFAULT_TOPIC_PREFIX, z2m_prefix: str = DEFAULT_Z2M_PREFIX
) -> tuple[str, ...]:
    """The topic filters the hub subscribes to (all at QoS 1).

    ``+/+/+`` rather than ``+/+/event`` and ``+/+/status``: a device publishing on a misspelt
    channel is then seen and rejected as ``unknown_topic`` instead of being unheard.
    """
    return (f"{_normalise_prefix(topic_prefix)}/+/+/+", f"{_normalise_prefix(z2m_prefix)}/#")
