"""Two suspected rule problems, checked: out-of-order door/motion at night, and DST nights.

Door at night: devices stamp events with their own time (``ts``); MQTT may deliver them out of
order (a retry that overtook, a repeater that buffered). Kari back inside must not give a door
alarm because her messages arrived out of order, and a real exit must not be missed because a
motion from before she left arrived late (scenarios/night-door-overtaken.yaml runs the same
through the real hub).

Inactivity stopwatch: it counts real elapsed time, so the night the clocks go back (11 h on the
wall clock from 21:30 to 08:30 is 12 real hours) and the night they go forward behave like any
other 12 real hours (scenarios/dst-fall-back-long-night.yaml, dst-spring-forward-still.yaml).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from hub.rules.engine import evaluate_observation
from hub.rules.model import Observation
from tests.hub.rules.kari import Story, home, local

TUESDAY = "2026-01-06"
DOOR_ALARM = ("raise", "door_night", "yellow", "door", "02:20")


def arrive(
    story: Story, device_id: str, kind: str, at: datetime, ts: datetime | None, **data: Any
) -> None:
    """An event that happened at ``ts`` by the device's clock and reaches the hub at ``at``."""
    story.run_until(at)
    obs = Observation(device_id=device_id, kind=kind, at=story.now, data=data, ts=ts)
    result = evaluate_observation(story.context(), story.state, obs, story.now)
    story._take(result, story.now)


def door(story: Story, at: datetime, ts: datetime | None, *, open_: bool) -> None:
    arrive(story, "door", "door", at, ts, open=open_)


def motion(story: Story, device: str, at: datetime, ts: datetime | None) -> None:
    arrive(story, device, "motion", at, ts, motion=True)


def t(hhmm: str, seconds: int = 0) -> datetime:
    return local(TUESDAY, hhmm, seconds)


# -- door at night, messages out of order ---------------------------------------------------------


def test_back_in_time_although_the_close_overtook_the_open_on_the_way_in() -> None:
    """The case out_of_order produced in the real hub: a false door alarm at 01:30."""
    story = Story(home(), t("01:19"))
    door(story, t("01:20"), t("01:20"), open_=True)
    door(story, t("01:20", 15), t("01:20", 15), open_=False)
    # back at 01:25: "closed" (01:25:15) arrives first, the "open" (01:25:00) a second later
    door(story, t("01:25", 15), t("01:25", 15), open_=False)
    door(story, t("01:25", 16), t("01:25"), open_=True)
    motion(story, "m-hall", t("01:25", 40), t("01:25", 40))
    motion(story, "m-bed", t("01:28"), t("01:28"))
    assert story.state["door"] is None
    story.run_until(t("02:00"))
    assert story.decisions("raise") == []


def test_back_in_time_although_the_motion_inside_overtook_the_close() -> None:
    story = Story(home(), t("02:09"))
    door(story, t("02:10"), t("02:10"), open_=True)
    door(story, t("02:10", 15), t("02:10", 15), open_=False)
    door(story, t("02:15"), t("02:15"), open_=True)
    motion(story, "m-living", t("02:15", 30), t("02:15", 30))  # she is in the living room...
    door(story, t("02:15", 31), t("02:15", 15), open_=False)  # ...after the door shut at :15
    assert story.state["door"] is None
    story.run_until(t("03:00"))
    assert story.decisions("raise") == []


def test_door_opened_and_shut_without_going_out_with_the_close_first_is_no_alarm() -> None:
    story = Story(home(), t("02:09"))
    door(story, t("02:10", 5), t("02:10", 5), open_=False)  # the close overtook the open
    door(story, t("02:10", 6), t("02:10"), open_=True)
    motion(story, "m-bed", t("02:11"), t("02:11"))
    assert story.state["door"] is None
    story.run_until(t("03:00"))
    assert story.decisions("raise") == []


def test_a_real_exit_with_the_close_first_still_alarms() -> None:
    story = Story(home(), t("02:09"))
    motion(story, "m-hall", t("02:09"), t("02:09"))
    door(story, t("02:10", 15), t("02:10", 15), open_=False)
    door(story, t("02:10", 16), t("02:10"), open_=True)
    assert story.run_until(t("03:00")) == [DOOR_ALARM]


def test_a_late_motion_from_before_she_left_does_not_hide_a_real_exit() -> None:
    """Before the fix the late living-room motion counted as back: the alarm was missed."""
    story = Story(home(), t("02:09"))
    door(story, t("02:10"), t("02:10"), open_=True)
    door(story, t("02:10", 15), t("02:10", 15), open_=False)
    motion(story, "m-living", t("02:10", 30), t("02:09", 50))  # buffered by a repeater
    motion(story, "m-bed", t("02:10", 40), t("02:08"))
    assert story.state["door"] is not None
    assert story.run_until(t("03:00")) == [DOOR_ALARM]


def test_device_times_are_never_after_the_arrival_nor_trusted_far_back() -> None:
    story = Story(home(), t("02:09"))
    door(story, t("02:10"), t("02:10"), open_=True)
    door(story, t("02:10", 15), t("02:10", 15), open_=False)
    # a motion sensor whose clock is an hour behind: arrival order, so this is back
    motion(story, "m-bed", t("02:12"), t("01:12"))
    assert story.state["door"] is None
    story.run_until(t("02:30"))
    # a door whose clock runs ahead: its close counts at arrival, motion after it is back
    door(story, t("02:40"), t("02:40"), open_=True)
    door(story, t("02:40", 15), t("02:45"), open_=False)
    motion(story, "m-bed", t("02:40", 30), t("02:40", 30))
    assert story.state["door"] is None
    story.run_until(t("03:30"))
    assert story.decisions("raise") == []


def test_without_device_times_arrival_order_decides() -> None:
    """Zigbee2MQTT events carry no ts: a close that overtook the open cannot be told apart
    from a door opened again, and the rules keep the alarm (the safe side)."""
    story = Story(home(), t("02:09"))
    door(story, t("02:10"), None, open_=True)
    door(story, t("02:10", 15), None, open_=False)
    door(story, t("02:15", 15), None, open_=False)
    door(story, t("02:15", 16), None, open_=True)
    motion(story, "m-bed", t("02:18"), None)
    assert story.run_until(t("03:00")) == [DOOR_ALARM]


# -- inactivity stopwatch over the DST changes ----------------------------------------------------


def test_fall_back_night_counts_real_hours() -> None:
    """25 October: in bed 21:30 CEST, up 08:29 CET is 11 h 59 min of real time: no alarm."""
    story = Story(home(), local("2026-10-24", "21:29"))
    story.event("m-bed", "motion", motion=True)
    story.run_until(local("2026-10-24", "21:30"))
    story.event("m-bed", "motion", motion=True)  # goes to bed
    assert story.run_until(local("2026-10-25", "08:29")) == [
        ("prealarm", "inactivity", "08:30", "08:25")  # 12 real hours after 21:30 CEST
    ]
    assert story.event("m-bed", "motion", motion=True) == [
        ("prealarm_cancelled", "inactivity", "08:29")
    ]
    assert story.decisions("raise") == []


def test_fall_back_night_still_for_12_real_hours_alarms_at_08_30_local() -> None:
    """The same night without moving: 12 real hours (11 on the wall clock) is the limit."""
    story = Story(home(), local("2026-10-24", "21:30"))
    story.event("m-bed", "motion", motion=True)
    assert story.run_until(local("2026-10-25", "08:29", 59)) == [
        ("prealarm", "inactivity", "08:30", "08:25")
    ]
    assert story.run_until(local("2026-10-25", "12:00")) == [
        ("raise", "inactivity", "yellow", None, "08:30")
    ]


def test_spring_forward_night_neither_early_nor_late() -> None:
    """29 March: still from 21:30 CET; 12 real hours later is 10:30 CEST (13 on the wall
    clock). A wall-clock stopwatch would alarm at 09:30 CEST, after 11 real hours."""
    story = Story(home(), local("2026-03-28", "21:30"))
    story.event("m-bed", "motion", motion=True)
    assert story.run_until(local("2026-03-29", "10:24", 59)) == []
    assert story.run_until(local("2026-03-29", "12:00")) == [
        ("prealarm", "inactivity", "10:30", "10:25"),
        ("raise", "inactivity", "yellow", None, "10:30"),
    ]
    assert story.decisions("raise") == [("raise", "inactivity", "yellow", None, "10:30")]


def test_real_time_gap_over_the_changes() -> None:
    """The arithmetic behind the two nights: UTC differences, not local ones."""
    assert local("2026-10-25", "08:30") - local("2026-10-24", "21:30") == timedelta(hours=11)
    assert (
        local("2026-10-25", "08:30").timestamp() - local("2026-10-24", "21:30").timestamp()
    ) == 12 * 3600
    assert (
        local("2026-03-29", "10:30").timestamp() - local("2026-03-28", "21:30").timestamp()
    ) == 12 * 3600
