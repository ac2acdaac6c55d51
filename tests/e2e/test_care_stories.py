"""Care stories: sensor events through the real broker and hub become exactly the right alarms.

Each story runs Kari's home (fall sensor, button, door, motion in hall, bathroom, bedroom and
living room) on a fake clock, and asserts the exact alarms — type, severity, local time — and
that no other alarm appeared.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy import update

from hub.broker import MosquittoProcess
from hub.storage.models import Resident
from tests.e2e.care_harness import OSLO, CareHarness, SeenAlarm

pytestmark = pytest.mark.broker

Story = Callable[[datetime], CareHarness]
MONDAY = datetime(2026, 1, 5, tzinfo=OSLO)  # winter time (UTC+1)


@pytest.fixture
def story(mosquitto: MosquittoProcess, db_url: str) -> Iterator[Story]:
    made: list[CareHarness] = []

    def make(start_local: datetime) -> CareHarness:
        harness = CareHarness(mosquitto, db_url, start_local)
        made.append(harness)
        return harness

    yield make
    for harness in made:
        harness.close()


def at(hh: int, mm: int = 0) -> datetime:
    return MONDAY.replace(hour=hh, minute=mm)


def kinds(alarms: list[SeenAlarm]) -> list[tuple[str, str, str]]:
    return [(a.type, a.severity, a.opened_local) for a in alarms]


def test_kari_falls_and_a_red_alarm_opens_at_once(story: Story) -> None:
    home = story(at(14, 32))
    home.event("fall", "fall", confidence=0.93)
    assert kinds(home.alarms()) == [("fall", "red", "14:32")]
    assert home.alarms()[0].status == "open"
    feedback = home.wait_feedback("alarm")
    assert feedback["alarm"]["type"] == "fall"
    assert feedback["alarm"]["help_on_the_way"] is False


def test_kari_presses_her_button(story: Story) -> None:
    home = story(at(9))
    home.event("button", "button", action="press")
    assert kinds(home.alarms()) == [("button", "red", "09:00")]


def test_kari_cancels_her_button_press_in_time_and_the_alarm_is_closed_not_lost(
    story: Story,
) -> None:
    home = story(at(9))
    home.event("button", "button", action="press")
    home.advance(timedelta(seconds=20))
    home.event("button", "button", action="cancel")
    [alarm] = home.alarms()
    assert (alarm.type, alarm.status) == ("button", "cancelled")
    timeline = home.timeline("button")
    assert ("transition", "cancelled") in timeline
    assert timeline[-1][0] == "escalation_stopped"  # nobody else is asked any more
    home.wait_feedback("ok")


def test_door_at_night_and_kari_is_back_in_time_raises_nothing(story: Story) -> None:
    home = story(at(2, 10))
    home.event("door", "door", open=True)
    home.advance(timedelta(minutes=2))
    home.event("door", "door", open=False)
    home.event("m-living", "motion", motion=True)
    home.advance(timedelta(minutes=30))
    assert home.alarms() == []


def test_door_at_night_and_kari_is_not_back_alarms_at_the_end_of_the_grace(story: Story) -> None:
    home = story(at(2, 10))
    home.event("door", "door", open=True)
    home.advance(timedelta(minutes=9))
    assert home.alarms() == []
    home.advance(timedelta(minutes=21))
    assert kinds(home.alarms()) == [("door_night", "yellow", "02:20")]


def test_door_in_daytime_raises_nothing(story: Story) -> None:
    home = story(at(14))
    home.event("door", "door", open=True)
    home.advance(timedelta(minutes=45))
    assert home.alarms() == []


def test_fifty_minutes_in_the_bathroom_at_night(story: Story) -> None:
    home = story(at(1))
    home.event("m-bath", "motion", motion=True)
    home.advance(timedelta(minutes=50))
    assert kinds(home.alarms()) == [("bathroom_long", "yellow", "01:45")]


def test_inactivity_prealarm_is_cancelled_by_motion_then_fires_and_stays_silent(
    story: Story,
) -> None:
    home = story(at(8))
    home.event("m-living", "motion", motion=True)
    home.at("19:56")  # the pre-alarm started at 19:55
    prealarm = home.wait_feedback("prealarm")
    assert prealarm["prealarm"]["type"] == "inactivity"
    home.event("m-living", "motion", motion=True)  # Kari moves: pre-alarm cancelled
    home.wait_feedback("ok")
    home.advance(timedelta(hours=12, minutes=1))  # no motion at all until 07:57
    assert kinds(home.alarms()) == [("inactivity", "yellow", "07:56")]
    home.advance(timedelta(hours=13))  # still nothing: silenced until activity resumes
    assert len(home.alarms()) == 1


def test_inactivity_window_mode_alarms_when_kari_is_not_up_by_ten(story: Story) -> None:
    home = story(at(5))
    with home.runtime.session_factory() as s, s.begin():
        s.execute(
            update(Resident).values(
                rule_config={
                    "inactivity_stopwatch_enabled": False,
                    "inactivity_window_enabled": True,
                }
            )
        )
    home.at("09:56")
    assert home.wait_feedback("prealarm")["prealarm"]["type"] == "inactivity"
    home.at("10:05")
    assert kinds(home.alarms()) == [("inactivity", "yellow", "10:00")]


def test_absence_mode_suppresses_activity_rules_but_not_a_fall(story: Story) -> None:
    home = story(at(2, 10))
    with home.runtime.session_factory() as s, s.begin():
        s.execute(update(Resident).values(absence_until=home.clock.now() + timedelta(days=7)))
    home.event("door", "door", open=True)
    home.advance(timedelta(minutes=30))
    assert home.alarms() == []
    home.event("fall", "fall")
    assert kinds(home.alarms()) == [("fall", "red", "02:40")]


def test_a_motion_sensor_that_goes_silent_raises_a_technical_alarm(story: Story) -> None:
    home = story(at(12))
    home.advance(timedelta(hours=2), silent=("m-bed",))
    alarms = home.alarms()
    assert [(a.type, a.severity, a.device_id) for a in alarms] == [
        ("device_offline", "green", "m-bed")
    ]
    assert "13:00" <= alarms[0].opened_local <= "13:05"


def test_the_only_fall_sensor_going_offline_by_last_will_is_red_at_once(story: Story) -> None:
    home = story(at(12))
    home.status("fall", online=False)
    assert [(a.type, a.severity, a.device_id, a.opened_local) for a in home.alarms()] == [
        ("device_offline", "red", "fall", "12:00")
    ]


def test_low_battery_raises_one_technical_alarm(story: Story) -> None:
    home = story(at(12))
    home.event("m-living", "motion", motion=True, battery=15)
    home.advance(timedelta(minutes=5))
    home.event("m-living", "motion", motion=True, battery=14)
    assert [(a.type, a.severity, a.device_id) for a in home.alarms()] == [
        ("low_battery", "green", "m-living")
    ]


def test_repeated_falls_join_the_open_alarm_and_a_retry_is_stored_once(story: Story) -> None:
    home = story(at(14, 32))
    home.event("fall", "fall")
    home.republish_last("fall", "fall")  # the same message again: stored once
    home.advance(timedelta(minutes=1))
    home.event("fall", "fall")
    [alarm] = home.alarms()
    assert (alarm.type, alarm.event_count) == ("fall", 2)
    # opened; step 1 ran in the same commit and reached nobody (this harness has no staff); joined
    assert [k for k, _ in home.timeline("fall")] == ["transition", "note", "event_joined"]


def test_hub_restart_during_the_door_grace_still_alarms_on_time(story: Story) -> None:
    home = story(at(2, 10))
    home.event("door", "door", open=True)
    home.restart_hub(down_for=timedelta(minutes=5))  # back at 02:15
    assert home.alarms() == []
    home.advance(timedelta(minutes=10))
    assert kinds(home.alarms()) == [("door_night", "yellow", "02:20")]


def test_hub_back_after_the_grace_alarms_at_once(story: Story) -> None:
    home = story(at(2, 10))
    home.event("door", "door", open=True)
    home.restart_hub(down_for=timedelta(minutes=20))  # back at 02:30
    assert kinds(home.alarms()) == [("door_night", "yellow", "02:30")]
