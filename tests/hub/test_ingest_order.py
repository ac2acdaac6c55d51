"""``hub.ingest.order``: falls and button actions first, a home's own messages in order."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.orm import sessionmaker

from devices.codecs import decode
from hub.config import Settings
from hub.ingest.order import Ordering, next_batch, ordering
from hub.ingest.pipeline import InboundMessage, IngestProcessor
from hub.ingest.service import URGENT_TURNS, IngestService

ROUTINE_A = Ordering(urgent=False, home="a", free=False)
ROUTINE_B = Ordering(urgent=False, home="b", free=False)
FALL_A = Ordering(urgent=True, home="a", free=False)
FALL_C = Ordering(urgent=True, home="c", free=False)
ZIGBEE = Ordering(urgent=False, home=None, free=False)  # a friendly name: any home
REJECTED = Ordering(urgent=False, home=None, free=True)


def _payload(kind: str, **extra: object) -> bytes:
    ts = datetime(2026, 1, 5, 14, 32, tzinfo=UTC).isoformat()
    return json.dumps({"type": kind, "ts": ts, "seq": 1, **extra}).encode()


def test_decoded_messages_are_classified_by_kind_and_the_home_their_topic_names() -> None:
    event = "carehub/v1/h7/d1/event"
    assert ordering(decode(event, _payload("fall"))) == Ordering(True, "h7", False)
    assert ordering(decode(event, _payload("button", action="press"))) == Ordering(
        True, "h7", False
    )
    assert ordering(decode(event, _payload("button", action="cancel"))).urgent
    assert ordering(decode(event, _payload("door", open=True))) == Ordering(False, "h7", False)
    assert ordering(decode(event, b"{not json")) == REJECTED
    assert ordering(decode("carehub/v1/h7/d1/status", b'{"online": true}')) == Ordering(
        False, "h7", False
    )
    radar = decode("zigbee2mqtt/bath_radar", b'{"fall_down_status": "fall"}')
    assert ordering(radar) == Ordering(True, None, False)


def test_without_anything_urgent_the_oldest_go_first() -> None:
    assert next_batch([ROUTINE_A, ROUTINE_B, ZIGBEE, REJECTED], 3) == [0, 1, 2]
    assert next_batch([], 5) == []


def test_a_fall_passes_other_homes_but_takes_its_own_home_along() -> None:
    pending = [ROUTINE_B, ROUTINE_A, REJECTED, ROUTINE_B, FALL_A, ROUTINE_A]
    assert next_batch(pending, 500) == [1, 4]


def test_nothing_passes_a_message_of_unknown_home() -> None:
    # the Zigbee message may be of home a: it goes first, and with it everything before it
    pending = [ROUTINE_B, REJECTED, ZIGBEE, ROUTINE_B, FALL_A]
    assert next_batch(pending, 500) == [0, 2, 4]
    # an urgent Zigbee message passes nothing at all
    radar = Ordering(urgent=True, home=None, free=False)
    assert next_batch([ROUTINE_B, REJECTED, ROUTINE_A, radar, ROUTINE_B], 500) == [0, 2, 3]


def test_every_urgent_message_goes_and_the_limit_keeps_the_oldest() -> None:
    pending = [ROUTINE_A, FALL_C, ROUTINE_B, FALL_A, ROUTINE_B]
    assert next_batch(pending, 500) == [0, 1, 3]
    assert next_batch(pending, 2) == [0, 1]


ORDERINGS = st.one_of(
    st.builds(
        Ordering,
        urgent=st.booleans(),
        home=st.sampled_from(["a", "b", "c", None]),
        free=st.just(False),
    ),
    st.just(REJECTED),
)


def _may_pass(later: Ordering, earlier: Ordering) -> bool:
    """May ``later`` be committed before ``earlier`` (which arrived first)?"""
    if earlier.free:
        return True
    return earlier.home is not None and later.home is not None and earlier.home != later.home


@given(st.lists(ORDERINGS, max_size=40), st.integers(min_value=1, max_value=12))
def test_no_message_is_committed_before_an_older_one_it_may_not_pass(
    pending: list[Ordering], limit: int
) -> None:
    picked = next_batch(pending, limit)
    assert picked == sorted(set(picked))
    assert len(picked) <= limit and all(0 <= k < len(pending) for k in picked)
    if pending:
        assert picked  # the worker always makes progress
    chosen = set(picked)
    for k in picked:
        for j in range(k):
            if j not in chosen:
                assert _may_pass(pending[k], pending[j]), (j, k)
    urgent = [k for k, item in enumerate(pending) if item.urgent]
    if not urgent:
        assert picked == list(range(min(limit, len(pending))))
    elif len(picked) < limit:
        assert set(urgent) <= chosen  # nothing held the urgent ones back but the limit


def test_the_worker_lets_urgent_messages_pass_only_a_few_batches_in_a_row() -> None:
    """A button pressed again and again must not hold other homes back for good: after
    ``URGENT_TURNS`` batches in a row that passed older messages, the next batch is the oldest
    ones (``IngestService``'s worker, fed directly; nothing is committed here)."""
    settings = Settings()
    service = IngestService(settings, IngestProcessor(settings, sessionmaker()))

    def arrive(home: str, kind: str, seq: int) -> None:
        extra = {"open": True} if kind == "door" else {"action": "press"}
        payload = _payload(kind, **extra).replace(b'"seq": 1', f'"seq": {seq}'.encode())
        topic = f"carehub/v1/{home}/{home}-{kind}/event"
        service._queue.put(InboundMessage(topic, payload, datetime(2026, 1, 5, tzinfo=UTC)))

    def next_homes() -> list[str]:
        return [held.message.topic.split("/")[2] for held in service._next_batch()]

    arrive("hb", "door", 1)
    for seq in range(1, URGENT_TURNS + 1):
        arrive("hc", "button", seq)
        assert next_homes() == ["hc"]  # each press passes home hb's door
    arrive("hc", "button", URGENT_TURNS + 1)
    assert next_homes() == ["hb", "hc"]  # enough: the oldest go, the new press with them
    arrive("hb", "door", 2)
    arrive("hc", "button", URGENT_TURNS + 2)
    assert next_homes() == ["hc"]  # and then urgent first again
    assert next_homes() == ["hb"]
