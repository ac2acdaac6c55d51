"""Signed payloads at the ingest: a device with an HMAC key must sign, and seq refuses replays.

The planner is pure (keys and last seq come in ``KnownDevice``); the processor runs it against
real SQLite and PostgreSQL, where a redelivery of a stored event stays a harmless duplicate.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from devices.codecs import decode
from devices.events import DecodeResult
from devices.signing import decode_key, sign_payload
from hub import devices_admin as admin
from hub.config import IngestSettings, Settings
from hub.ingest.pipeline import InboundMessage, IngestProcessor, plan_batch, replay_candidates
from hub.ingest.store import KnownDevice
from hub.storage.models import Device, DeviceType, Protocol, RejectedMessage, SensorEvent
from tests.factories import T0, add_home

KEY = bytes(range(32))
OTHER_KEY = bytes(32)
TOPIC = "carehub/v1/h1/btn/event"
BUTTON = KnownDevice(
    "btn", "h1", DeviceType.ALARM_BUTTON, Protocol.NATIVE, None, True, None, 5, KEY
)


def _body(seq: int, at: datetime = T0, **extra: Any) -> bytes:
    body = {"type": "button", "ts": at.isoformat(), "seq": seq, "action": "press", **extra}
    return json.dumps(body).encode()


def _msg(payload: bytes, topic: str = TOPIC) -> InboundMessage:
    return InboundMessage(topic, payload, T0)


def _plan(
    payloads: list[bytes],
    device: KnownDevice = BUTTON,
    stored: frozenset[tuple[str, str]] = frozenset(),
) -> Any:
    messages = [_msg(p) for p in payloads]
    results: list[DecodeResult] = [decode(m.topic, m.payload) for m in messages]
    return plan_batch(messages, results, {device.id: device}, {}, stored_keys=stored)


def _codes(plan: Any) -> list[str]:
    return [row["reason_code"] for row in plan.rejected]


def test_a_correctly_signed_event_with_a_higher_seq_is_accepted() -> None:
    plan = _plan([sign_payload(_body(6), KEY)])
    assert [e["seq"] for e in plan.events if e["kind"] == "button"] == [6]
    assert plan.rejected == [] and plan.device_changes["btn"]["last_seq"] == 6


def test_unsigned_wrongly_signed_and_tampered_events_are_refused_as_bad_signature() -> None:
    tampered = json.loads(sign_payload(_body(7), KEY))
    tampered["action"] = "cancel"
    plan = _plan(
        [
            _body(6),
            sign_payload(_body(7), OTHER_KEY),
            json.dumps(tampered).encode(),
            _body(8, sig="bm90IGEgc2ln"),
        ]
    )
    assert _codes(plan) == ["bad_signature"] * 4 and plan.events == []
    assert 'no "sig"' in plan.rejected[0]["reason"]


def test_a_signed_event_with_an_old_seq_that_is_not_stored_is_a_replay() -> None:
    plan = _plan([sign_payload(_body(5), KEY), sign_payload(_body(3), KEY)])
    assert _codes(plan) == ["replayed", "replayed"] and plan.events == []
    assert "last accepted seq 5" in plan.rejected[0]["reason"]


def test_seq_must_rise_within_a_batch_too_but_a_redelivery_in_it_is_a_duplicate() -> None:
    first = sign_payload(_body(6), KEY)
    plan = _plan([first, first, sign_payload(_body(6, T0 + timedelta(seconds=1)), KEY)])
    assert _codes(plan) == ["replayed"]  # same seq, another time: not the same event
    assert plan.duplicates_in_batch == 1
    assert [e["seq"] for e in plan.events if e["kind"] == "button"] == [6]


def test_a_redelivery_of_a_stored_signed_event_is_a_duplicate_not_a_replay() -> None:
    old = sign_payload(_body(5), KEY)
    results: list[DecodeResult] = [decode(TOPIC, old)]
    candidates = replay_candidates(results, {"btn": BUTTON})
    assert candidates == {("btn", f"5@{T0.isoformat()}")}
    plan = _plan([old], stored=frozenset(candidates))
    assert plan.rejected == [] and plan.events == [] and plan.duplicates_in_batch == 1


def test_an_unsigned_device_may_send_a_sig_and_a_signed_device_an_unsigned_status() -> None:
    plain = KnownDevice("btn", "h1", DeviceType.ALARM_BUTTON, Protocol.NATIVE, None, True, None)
    assert _plan([_body(1, sig="anything")], device=plain).rejected == []
    status = InboundMessage("carehub/v1/h1/btn/status", b'{"online": false}', T0)
    forged = InboundMessage(
        "carehub/v1/h1/btn/status", sign_payload(b'{"online": true}', OTHER_KEY), T0
    )
    messages = [status, forged]
    plan = plan_batch(messages, [decode(m.topic, m.payload) for m in messages], {"btn": BUTTON}, {})
    assert _codes(plan) == ["bad_signature"]
    assert [s.online for s in plan.status_changes] == [False]


# --- through the processor and a real database --------------------------------------------------


@pytest.fixture
def signed(session_factory: sessionmaker[Session]) -> tuple[IngestProcessor, bytes]:
    add_home(session_factory, "h1", devices=())
    with session_factory() as session, session.begin():
        reg = admin.register(
            session,
            device_id="btn",
            type=DeviceType.ALARM_BUTTON,
            protocol=Protocol.NATIVE,
            home_id="h1",
            room="Stue",
            hmac=True,
            now=T0,
            actor="ingrid",
        )
    assert reg.hmac_key is not None
    settings = Settings(ingest=IngestSettings(rejected_keep=100))
    return IngestProcessor(settings, session_factory), decode_key(reg.hmac_key)


def _stored_seqs(factory: sessionmaker[Session]) -> list[int | None]:
    with factory() as session:
        return list(
            session.scalars(
                select(SensorEvent.seq).where(SensorEvent.kind == "button").order_by(SensorEvent.id)
            )
        )


def test_the_processor_stores_signed_events_once_and_refuses_a_replay(
    signed: tuple[IngestProcessor, bytes], session_factory: sessionmaker[Session]
) -> None:
    processor, key = signed
    first, second = sign_payload(_body(1), key), sign_payload(_body(2, T0 + timedelta(1)), key)
    assert len(processor.process([_msg(first), _msg(second)]).stored) == 3  # + online
    # the broker redelivers both after a hub crash: duplicates, nothing rejected
    again = processor.process([_msg(first), _msg(second)])
    assert again.stored == [] and again.duplicates == 2 and again.rejected == 0
    # the retention job deletes the old events; a captured copy of seq 1 is now a replay
    with session_factory() as session, session.begin():
        session.execute(delete(SensorEvent))
    replay = processor.process([_msg(first)])
    assert replay.stored == [] and replay.rejected == 1
    forged = processor.process([_msg(sign_payload(_body(3), bytes(32))), _msg(_body(4))])
    assert forged.rejected == 2
    fresh = processor.process([_msg(sign_payload(_body(3, T0 + timedelta(2)), key))])
    assert [e.seq for e in fresh.stored if e.kind == "button"] == [3]
    with session_factory() as session:
        codes = session.scalars(select(RejectedMessage.reason_code).order_by(RejectedMessage.id))
        assert list(codes) == ["replayed", "bad_signature", "bad_signature"]
        device = session.get(Device, "btn")
        assert device is not None and device.last_seq == 3
        assert session.scalar(select(func.count()).select_from(SensorEvent)) == 1


def test_a_retired_devices_key_no_longer_counts(
    signed: tuple[IngestProcessor, bytes], session_factory: sessionmaker[Session]
) -> None:
    processor, key = signed
    with session_factory() as session, session.begin():
        admin.retire(session, "btn", now=T0, actor="ingrid")
    outcome = processor.process([_msg(sign_payload(_body(1), key))])
    # a retired device is unknown to the ingest: the message shows up as discovered
    assert outcome.stored == [] and outcome.discovered == 1
