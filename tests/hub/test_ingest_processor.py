"""IngestProcessor against real SQLite and PostgreSQL: stored once, rejected kept, nothing lost."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from devices.codecs import decode
from devices.events import DecodeResult
from hub.config import IngestSettings, Settings
from hub.ingest.pipeline import InboundMessage, IngestProcessor
from hub.storage.models import Device, DiscoveredDevice, RejectedMessage, SensorEvent
from tests.factories import T0, add_home


def _event(seq: int, kind: str = "fall", device: str = "d-fall", **extra: object) -> InboundMessage:
    payload = {"type": kind, "ts": (T0 + timedelta(seconds=seq)).isoformat(), "seq": seq, **extra}
    return InboundMessage(
        topic=f"carehub/v1/h1/{device}/event",
        payload=json.dumps(payload).encode(),
        received_at=T0 + timedelta(seconds=seq),
    )


def _count(factory: sessionmaker[Session], model: type) -> int:
    with factory() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


@pytest.fixture
def processor(session_factory: sessionmaker[Session]) -> IngestProcessor:
    add_home(session_factory)
    settings = Settings(ingest=IngestSettings(rejected_keep=10))
    return IngestProcessor(settings, session_factory)


def test_redelivered_events_are_stored_once(
    processor: IngestProcessor, session_factory: sessionmaker[Session]
) -> None:
    first = processor.process([_event(1), _event(2)])
    again = processor.process([_event(2), _event(3)])  # 2 is a redelivery
    # the first event also brings the device online (a status change is recorded once)
    assert [e.kind for e in first.stored] == ["fall", "status", "fall"]
    assert [e.seq for e in again.stored] == [3] and again.duplicates == 1
    with session_factory() as session:
        seqs = session.scalars(
            select(SensorEvent.seq).where(SensorEvent.kind == "fall").order_by(SensorEvent.seq)
        ).all()
        device = session.get(Device, "d-fall")
    assert seqs == [1, 2, 3]
    assert device is not None and device.last_seq == 3 and device.online is True


def test_bad_messages_are_kept_with_readable_reasons_and_good_ones_still_stored(
    processor: IngestProcessor, session_factory: sessionmaker[Session]
) -> None:
    bad = [
        InboundMessage("carehub/v1/h1/d-door/event", b"{not json", T0),
        InboundMessage(
            "carehub/v1/h1/d-door/event",
            json.dumps({"type": "door", "ts": T0.isoformat(), "seq": 1, "open": "yes"}).encode(),
            T0,
        ),
        InboundMessage("carehub/v1/h1/d-door/event", b"{" + b" " * 5000 + b"}", T0),
    ]
    outcome = processor.process([*bad, _event(5)])
    assert outcome.rejected == 3
    assert [e.kind for e in outcome.stored] == ["fall", "status"]
    with session_factory() as session:
        rows = session.scalars(select(RejectedMessage).order_by(RejectedMessage.id)).all()
    assert [r.reason_code for r in rows] == ["invalid_json", "schema", "oversized"]
    assert "open" in rows[1].reason
    assert rows[2].payload_size == 5002 and len(rows[2].payload_excerpt) < 600


def test_rejected_messages_are_bounded(
    processor: IngestProcessor, session_factory: sessionmaker[Session]
) -> None:
    for _ in range(3):
        batch = [InboundMessage("carehub/v1/h1/d-door/event", b"x%d" % j, T0) for j in range(7)]
        processor.process(batch)
    with session_factory() as session:
        kept = session.scalars(
            select(RejectedMessage.payload_excerpt).order_by(RejectedMessage.id)
        ).all()
    assert len(kept) == 10
    assert kept[-1] == "x6"


def test_unknown_devices_are_discovered_and_counted(
    processor: IngestProcessor, session_factory: sessionmaker[Session]
) -> None:
    unknown = InboundMessage(
        "carehub/v1/h9/new-button/event",
        json.dumps({"type": "button", "ts": T0.isoformat(), "seq": 1, "action": "press"}).encode(),
        T0,
    )
    processor.process([unknown])
    processor.process([unknown])
    zigbee = InboundMessage("zigbee2mqtt/new_door", b'{"contact": false}', T0)
    processor.process([zigbee])
    with session_factory() as session:
        found = session.scalars(select(DiscoveredDevice).order_by(DiscoveredDevice.id)).all()
    assert [(d.identifier, d.home_hint, d.message_count, d.last_kind) for d in found] == [
        ("new-button", "h9", 2, "button"),
        ("new_door", None, 1, "door"),
    ]
    assert _count(session_factory, SensorEvent) == 0


def test_zigbee_and_native_status_update_the_device(
    processor: IngestProcessor, session_factory: sessionmaker[Session]
) -> None:
    processor.process(
        [
            InboundMessage("carehub/v1/h1/d-fall/status", b'{"online": true, "battery": 15}', T0),
            InboundMessage("zigbee2mqtt/hall_door/availability", b"offline", T0),
            InboundMessage("zigbee2mqtt/bath_radar", b'{"fall_down_status": "fall"}', T0),
        ]
    )
    with session_factory() as session:
        fall = session.get(Device, "d-fall")
        door = session.get(Device, "z-door")
        radar_events = session.scalars(
            select(SensorEvent).where(
                SensorEvent.device_id == "z-radar", SensorEvent.kind == "fall"
            )
        ).all()
    assert fall is not None and fall.battery == 15 and fall.last_seen_at == T0
    assert door is not None and door.online is False
    assert [e.data["fall_state"] for e in radar_events] == ["fall"]


def test_a_message_that_breaks_the_hub_is_kept_as_rejected_and_the_rest_go_through(
    session_factory: sessionmaker[Session],
) -> None:
    add_home(session_factory)

    def fragile(topic: str, payload: bytes) -> DecodeResult:
        if b"boom" in payload:
            raise RuntimeError("simulated bug")
        return decode(topic, payload)

    processor = IngestProcessor(Settings(), session_factory, decoder=fragile)
    poison = InboundMessage("carehub/v1/h1/d-fall/event", b'{"boom": 1}', T0)
    outcome = processor.process([_event(1), poison, _event(2)])
    assert [e.seq for e in outcome.stored if e.kind == "fall"] == [1, 2]
    assert outcome.rejected == 1
    with session_factory() as session:
        [row] = session.scalars(select(RejectedMessage)).all()
    assert row.reason_code == "internal_error"
    assert "simulated bug" in row.reason
