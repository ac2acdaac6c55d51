"""Payload codecs per protocol behind one pure ``decode(topic, payload)`` that never raises."""

from __future__ import annotations

import logging

from devices.codecs import native_v1, zigbee2mqtt
from devices.events import DecodeResult, Ignored, Rejected, RejectReason
from devices.topics import (
    DEFAULT_TOPIC_PREFIX,
    DEFAULT_Z2M_PREFIX,
    IgnoredTopic,
    NativeTopic,
    UnknownTopic,
    Z2MTopic,
    parse_topic,
)

__all__ = ["DEFAULT_MAX_PAYLOAD_BYTES", "decode"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_PAYLOAD_BYTES = 4096


def _decode(
    topic: str, payload: bytes, max_payload_bytes: int, topic_prefix: str, z2m_prefix: str
) -> DecodeResult:
    info = parse_topic(topic, topic_prefix=topic_prefix, z2m_prefix=z2m_prefix)
    if isinstance(info, IgnoredTopic):
        # Before the size check: Zigbee2MQTT's retained bridge/devices list is large and harmless.
        return Ignored(info.reason)
    if isinstance(info, UnknownTopic):
        return Rejected(RejectReason.UNKNOWN_TOPIC, info.reason)
    data = payload if isinstance(payload, bytes) else bytes(payload)
    if len(data) > max_payload_bytes:
        return Rejected(
            RejectReason.OVERSIZED,
            f"payload is {len(data)} bytes; the limit is {max_payload_bytes}",
            info.device,
        )
    if isinstance(info, NativeTopic):
        if info.channel == "event":
            return native_v1.decode_event(info.device, data)
        return native_v1.decode_status(info.device, data)
    assert isinstance(info, Z2MTopic)
    if info.channel == "availability":
        return zigbee2mqtt.decode_availability(info.device, data)
    return zigbee2mqtt.decode_state(info.device, data)


def decode(
    topic: str,
    payload: bytes,
    *,
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    topic_prefix: str = DEFAULT_TOPIC_PREFIX,
    z2m_prefix: str = DEFAULT_Z2M_PREFIX,
) -> DecodeResult:
    """Turn one MQTT message into typed messages, a readable rejection, or "not for the hub".

    Order of checks: topic, size, UTF-8, JSON, object, schema. Never raises: a failure of the
    decoder itself is a ``Rejected(INTERNAL_ERROR)`` so the message is still kept and counted.
    """
    try:
        return _decode(topic, payload, max_payload_bytes, topic_prefix, z2m_prefix)
    except Exception as exc:  # the contract is "never raises"; this is a bug if it happens
        logger.exception("decoder failed on topic %r", topic)
        return Rejected(
            RejectReason.INTERNAL_ERROR,
            f"the decoder failed ({type(exc).__name__}); this is a bug in the hub",
        )
