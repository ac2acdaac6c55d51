"""Escalation stories: a fall reaches people by SMS and voice, in order, until someone takes it.

Real Mosquitto, real database, the real ``twilio`` library against the Twilio simulator, a fake
clock. Any SMS or call a story did not expect fails it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, time, timedelta

import pytest

from hub.broker import MosquittoProcess
from tests.e2e.escalation_harness import (
    ANNE,
    KRISTIN,
    NINA,
    OLA,
    OSLO,
    PER,
    EscalationHarness,
)

pytestmark = pytest.mark.broker

Make = Callable[..., EscalationHarness]
AFTERNOON = datetime(2026, 1, 5, 14, 32, tzinfo=OSLO)


@pytest.fixture
def harness(mosquitto: MosquittoProcess, db_url: str) -> Iterator[Make]:
    made: list[EscalationHarness] = []

    def make(start: datetime = AFTERNOON, **kwargs: object) -> EscalationHarness:
        h = EscalationHarness(mosquitto, db_url, start, **kwargs)  # type: ignore[arg-type]
        made.append(h)
        return h

    yield make
    errors = []
    for h in made:
        try:
            h.close()
        except AssertionError as exc:
            errors.append(str(exc))
    assert not errors, errors


def test_kari_falls_nina_takes_it_by_sms_and_the_others_are_told(harness: Make) -> None:
    h = harness()
    h.fall()
    h.expect_sms(NINA, "Fall")  # step 1: the on-duty nurse
    h.expect_sms(PER)  # the informed son: one SMS, no health details
    h.advance(minutes=2)
    # step 2: every nurse of the zone and the coordinator, SMS and a call (red alarm)
    for number in (NINA, OLA, KRISTIN):
        h.expect_sms(number, "Fall")
        h.expect_call(number, "Trykk 1")
    h.reply(NINA, "1")
    h.expect_sms(NINA, "tatt")  # her confirmation
    h.expect_sms(OLA, "Nina")  # "taken by Nina"
    h.expect_sms(KRISTIN, "Nina")
    h.advance(minutes=30)
    h.expect_nothing_more()
    assert h.alarm().status.value == "acknowledged"


def test_nobody_answers_and_the_alarm_ends_unanswered(harness: Make) -> None:
    h = harness(relatives=False)
    h.fall()
    for _round in range(3):
        h.expect_sms(NINA, "Fall")
        h.advance(minutes=2)
        for number in (NINA, OLA, KRISTIN):
            h.expect_sms(number, "Fall")
            h.expect_call(number)
        h.advance(minutes=3)  # step 3 (acting relatives): there are none
        h.advance(minutes=5)
    h.expect_nothing_more()
    alarm = h.alarm()
    assert alarm.unanswered is True
    assert alarm.status.value == "notified"


def test_informed_relative_gets_exactly_one_sms_and_the_acting_one_is_asked_in_step_3(
    harness: Make,
) -> None:
    h = harness()
    h.fall()
    h.expect_sms(NINA)
    informed = h.expect_sms(PER)
    assert "fall" not in informed.body.lower()
    h.advance(minutes=2)
    for number in (NINA, OLA, KRISTIN):
        h.expect_sms(number)
        h.expect_call(number)
    h.advance(minutes=3)
    asked = h.expect_sms(ANNE, "1")
    assert "fall" not in asked.body.lower()
    h.reply(ANNE, "1")  # Anne takes it
    h.expect_sms(ANNE)  # her confirmation
    for number in (NINA, OLA, KRISTIN):
        h.expect_sms(number, "tatt")
    h.advance(minutes=20)
    h.expect_nothing_more()


def test_quiet_hours_are_respected_except_for_red(harness: Make) -> None:
    night = datetime(2026, 1, 5, 2, 10, tzinfo=OSLO)
    h = harness(night, anne_quiet=(time(22, 0), time(7, 0)))
    h.publish("door", "door", open=True)  # yellow door-at-night after 10 minutes
    h.advance(minutes=10)
    h.expect_sms(NINA)
    h.expect_sms(PER)  # the informed son has no quiet hours
    h.advance(minutes=2)
    for number in (NINA, OLA, KRISTIN):
        h.expect_sms(number)
    h.advance(minutes=3)  # step 3: Anne is in quiet hours and the alarm is yellow: no SMS
    h.advance(minutes=1)
    assert not [m for m in h.unexpected() if m.to == ANNE]
    h.reply(NINA, "1")
    h.expect_sms(NINA)
    for number in (OLA, KRISTIN):
        h.expect_sms(number, "tatt")
    # a red alarm in the same quiet hours does reach Anne
    h.fall()
    h.expect_sms(NINA, "Fall")
    h.expect_sms(PER)
    h.advance(minutes=2)
    for number in (NINA, OLA, KRISTIN):
        h.expect_sms(number)
        h.expect_call(number)
    h.advance(minutes=3)
    h.expect_sms(ANNE)
    h.reply(ANNE, "1")
    h.expect_sms(ANNE)
    for number in (NINA, OLA, KRISTIN):
        h.expect_sms(number, "tatt")
    h.advance(minutes=20)
    h.expect_nothing_more()


def test_provider_down_for_two_minutes_retries_and_falls_back_to_voice(harness: Make) -> None:
    h = harness(relatives=False)
    h.fault(mode="http_500", count=None)  # every request fails until cleared
    h.fall()
    h.advance(minutes=1)
    assert h.unexpected() == []  # nothing got through yet; the hub keeps trying
    h.advance(minutes=1)
    httpx_delete = __import__("httpx").delete
    httpx_delete(f"{h.sim.url}/_sim/faults", timeout=5).raise_for_status()  # provider is back
    h.advance(seconds=70)
    # the step-1 SMS finally goes out, and step 2 (due at 2 min) did too: nothing is lost
    h.expect_sms(NINA, "Fall")
    for number in (NINA, OLA, KRISTIN):
        h.expect_sms(number, "Fall")
        h.expect_call(number)
    h.reply(NINA, "1")
    h.expect_sms(NINA)
    for number in (OLA, KRISTIN):
        h.expect_sms(number, "tatt")
    h.advance(minutes=15)
    h.expect_nothing_more()


def test_an_undelivered_sms_for_a_red_alarm_is_followed_by_a_call(harness: Make) -> None:
    h = harness(relatives=False)
    h.fault(mode="undelivered", to=NINA, count=1)
    h.fall()
    h.expect_sms(NINA, "Fall")  # accepted, then reported undelivered by the network
    h.expect_call(NINA, "Trykk 1")  # the voice fallback
    h.script(to=NINA, digits="1")  # she will take the next call she gets
    h.advance(minutes=2)
    for number in (NINA, OLA, KRISTIN):
        h.expect_sms(number, "Fall")
        h.expect_call(number)
    # Nina pressed 1 on the step-2 call: the others are told
    for number in (OLA, KRISTIN):
        h.expect_sms(number, "tatt")
    h.advance(minutes=15)
    h.expect_nothing_more()
    assert h.alarm().status.value == "acknowledged"


def test_the_hub_dies_between_two_steps_and_the_next_step_fires_on_time(harness: Make) -> None:
    h = harness(relatives=False)
    h.fall()
    h.expect_sms(NINA, "Fall")
    h.advance(minutes=1)
    h.kill_hub(down_for=timedelta(seconds=30))  # back at 1 min 30 s, step 2 is due at 2 min
    h.advance(seconds=29)
    assert h.unexpected() == []
    h.advance(seconds=1)
    for number in (NINA, OLA, KRISTIN):
        h.expect_sms(number, "Fall")
        h.expect_call(number)
    h.reply(KRISTIN, "1")
    h.expect_sms(KRISTIN)
    for number in (NINA, OLA):
        h.expect_sms(number, "tatt")
    h.advance(minutes=15)
    h.expect_nothing_more()


def test_a_reply_from_an_unknown_number_gets_a_clear_answer(harness: Make) -> None:
    h = harness(relatives=False)
    h.fall()
    h.expect_sms(NINA)
    result = h.reply("+4799999999", "1")
    assert result["replies"], "the hub answers an unknown number"
    h.expect_sms("+4799999999")
    h.reply(NINA, "1")
    h.expect_sms(NINA, "tatt")
    late = h.reply(OLA, "1")  # Ola was never asked: nothing to take
    assert late["replies"]
    h.expect_sms(OLA)
    h.advance(minutes=15)
    h.expect_nothing_more()
