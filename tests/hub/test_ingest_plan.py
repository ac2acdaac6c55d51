"""The pure ingest planner: what a batch of decoded messages writes, with no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

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
from hub.ingest.pipeline import InboundMessage, dedup_key, plan_batch
from hub.ingest.store import KnownDevice
from hub.storage.models import DeviceType, Protocol

T0 = datetime(2026, 1, 5, 2, 10, tzinfo=UTC)
FALL = KnownDevice("d1", "h1", DeviceType.FALL_SENSOR, Protocol.NATIVE, None, True, None)
DOOR = KnownDevice("z1", "h1", DeviceType.DOOR_CONTACT, Protocol.ZIGBEE2MQTT, "door", None, None)


def _msg(topic: str = "carehub/v1/h1/d1/event", payload: bytes = b"{}") -> InboundMessage:
    return InboundMessage(topic=topic, payload=payload, received_at=T0)


def _fall(seq: int, home: str = "h1", device: str = "d1", ts: datetime = T0) -> SensorEventMsg:
    return SensorEventMsg(
        device=DeviceRef("native", device, home),
        kind=EventKind.FALL,
        ts=ts,
        seq=seq,
        fall_state="fall",
        telemetry=Telemetry(battery=55),
    )


def test_a_fall_becomes_one_event_row_and_updates_the_device() -> None:
    plan = plan_batch([_msg()], [Decoded((_fall(7),))], {"d1": FALL}, {})
    assert [(e["device_id"], e["kind"], e["seq"]) for e in plan.events] == [("d1", "fall", 7)]
    assert plan.events[0]["data"] == {"fall_state": "fall", "battery": 55}
    assert plan.device_changes["d1"] == {"battery": 55, "last_seen_at": T0, "last_seq": 7}
    assert plan.rejected == [] and plan.discovered == []


def test_the_same_event_twice_in_one_batch_is_planned_once() -> None:
    plan = plan_batch(
        [_msg(), _msg()], [Decoded((_fall(7),)), Decoded((_fall(7),))], {"d1": FALL}, {}
    )
    assert len(plan.events) == 1
    assert plan.duplicates_in_batch == 1


def test_a_restarted_seq_counter_with_a_new_time_is_not_a_duplicate() -> None:
    later = _fall(7, ts=T0 + timedelta(hours=3))
    assert dedup_key(_fall(7)) != dedup_key(later)
    plan = plan_batch([_msg(), _msg()], [Decoded((_fall(7),)), Decoded((later,))], {"d1": FALL}, {})
    assert len(plan.events) == 2


def test_an_unregistered_device_is_discovered_not_dropped() -> None:
    plan = plan_batch(
        [_msg(payload=b'{"type":"fall"}')], [Decoded((_fall(1, device="dX"),))], {}, {}
    )
    assert plan.events == []
    assert plan.discovered[0]["identifier"] == "dX"
    assert plan.discovered[0]["home_hint"] == "h1"
    assert plan.discovered[0]["last_kind"] == "fall"
    assert plan.discovered[0]["last_payload"] == '{"type":"fall"}'


def test_a_device_speaking_for_another_home_is_rejected_with_a_reason() -> None:
    plan = plan_batch([_msg()], [Decoded((_fall(1, home="h2"),))], {"d1": FALL}, {})
    assert plan.events == []
    [row] = plan.rejected
    assert row["reason_code"] == RejectReason.HOME_MISMATCH.value
    assert "belongs to home h1" in row["reason"] and "h2" in row["reason"]


def test_a_native_id_registered_as_zigbee_is_a_protocol_mismatch() -> None:
    z_as_native = KnownDevice(
        "d1", "h1", DeviceType.FALL_SENSOR, Protocol.ZIGBEE2MQTT, "x", None, None
    )
    plan = plan_batch([_msg()], [Decoded((_fall(1),))], {"d1": z_as_native}, {})
    assert plan.rejected[0]["reason_code"] == "protocol_mismatch"


def test_rejected_decodes_are_kept_with_an_excerpt_and_ignored_ones_only_counted() -> None:
    big = b"x" * 5000
    plan = plan_batch(
        [_msg(payload=big), _msg(topic="zigbee2mqtt/bridge/state")],
        [Rejected(RejectReason.OVERSIZED, "payload is 5000 bytes"), Ignored("bridge")],
        {},
        {},
        excerpt_bytes=16,
    )
    [row] = plan.rejected
    assert row["payload_size"] == 5000
    assert row["payload_excerpt"] == "x" * 16 + "…"
    assert plan.ignored == 1


def test_a_last_will_marks_the_device_offline_once_and_records_the_change() -> None:
    will = StatusMsg(device=DeviceRef("native", "d1", "h1"), online=False)
    plan = plan_batch([_msg(), _msg()], [Decoded((will,)), Decoded((will,))], {"d1": FALL}, {})
    assert plan.device_changes["d1"]["online"] is False
    assert "last_seen_at" not in plan.device_changes["d1"]
    assert [(s.device_id, s.online) for s in plan.status_changes] == [("d1", False)]
    assert [e["kind"] for e in plan.events] == ["status"]


def test_an_event_from_an_offline_device_brings_it_back_online() -> None:
    offline = KnownDevice(
        "z1", "h1", DeviceType.DOOR_CONTACT, Protocol.ZIGBEE2MQTT, "door", False, None
    )
    door = SensorEventMsg(DeviceRef("zigbee2mqtt", "door"), EventKind.DOOR, None, None, open=True)
    plan = plan_batch([_msg("zigbee2mqtt/door")], [Decoded((door,))], {}, {"door": offline})
    assert [e["kind"] for e in plan.events] == ["door", "status"]
    assert plan.device_changes["z1"]["online"] is True
    assert plan.events[0]["dedup_key"] is None
