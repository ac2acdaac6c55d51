"""Door at night (with its grace and restarts) and the long bathroom visit at night."""

from __future__ import annotations

from datetime import timedelta

from tests.hub.rules.kari import Story, home, local

MONDAY = "2026-01-05"
TUESDAY = "2026-01-06"


def test_door_at_night_and_kari_is_back_in_time_raises_nothing() -> None:
    story = Story(home(), local(MONDAY, "02:10"))
    assert story.event("door", "door", open=True) == []
    assert story.next_due == local(MONDAY, "02:20")
    story.advance(timedelta(minutes=2))
    story.event("door", "door", open=False)
    story.event("m-living", "motion", motion=True)
    assert story.state["door"] is None
    story.advance(timedelta(minutes=30))
    assert story.decisions() == []


def test_motion_in_the_hall_or_before_the_door_closes_is_not_back() -> None:
    story = Story(home(), local(MONDAY, "02:10"))
    story.event("door", "door", open=True)
    story.event("m-living", "motion", motion=True)  # door still open
    story.advance(timedelta(minutes=1))
    story.event("door", "door", open=False)
    story.event("m-hall", "motion", motion=True)  # the entrance itself does not count
    assert story.advance(timedelta(minutes=15)) == [
        ("raise", "door_night", "yellow", "door", "02:20")
    ]


def test_door_at_night_and_kari_is_not_back_alarms_exactly_at_the_end_of_the_grace() -> None:
    story = Story(home(), local(MONDAY, "02:10"))
    story.event("door", "door", open=True)
    assert story.run_until(local(MONDAY, "02:19", 59)) == []
    assert story.run_until(local(MONDAY, "02:40")) == [
        ("raise", "door_night", "yellow", "door", "02:20")
    ]
    assert story.state["door"] is None


def test_a_door_opened_again_during_the_grace_keeps_the_original_deadline() -> None:
    story = Story(home(), local(MONDAY, "02:10"))
    story.event("door", "door", open=True)
    story.advance(timedelta(minutes=5))
    story.event("door", "door", open=False)
    story.event("door", "door", open=True)  # out again, without coming in
    assert story.next_due == local(MONDAY, "02:20")
    assert story.advance(timedelta(minutes=30)) == [
        ("raise", "door_night", "yellow", "door", "02:20")
    ]


def test_hub_back_during_the_grace_still_alarms_on_time() -> None:
    story = Story(home(), local(MONDAY, "02:10"))
    story.event("door", "door", open=True)
    assert story.wake_late(local(MONDAY, "02:15")) == []  # restart catch-up: nothing yet
    assert story.next_due == local(MONDAY, "02:20")
    assert story.run_until(local(MONDAY, "02:30")) == [
        ("raise", "door_night", "yellow", "door", "02:20")
    ]


def test_hub_back_after_the_grace_alarms_at_once_and_only_once() -> None:
    story = Story(home(), local(MONDAY, "02:10"))
    story.event("door", "door", open=True)
    assert story.wake_late(local(MONDAY, "02:30")) == [
        ("raise", "door_night", "yellow", "door", "02:30")
    ]
    assert story.wake_late(local(MONDAY, "02:31")) == []
    assert story.decisions() == [("raise", "door_night", "yellow", "door", "02:30")]


def test_a_late_back_event_counts_at_its_own_time() -> None:
    """Kari came in at 02:15; the hub processed it only at 02:25: she was back in time."""
    story = Story(home(), local(MONDAY, "02:10"))
    story.event("door", "door", open=True)
    story.now = local(MONDAY, "02:25")  # nothing ran in between: one batch of two events
    story.late_event("door", "door", local(MONDAY, "02:14"), open=False)
    assert story.next_due == local(MONDAY, "02:20")  # due now, unless the batch says otherwise
    story.late_event("m-bed", "motion", local(MONDAY, "02:15"), motion=True)
    assert story.next_due is not None and story.next_due > story.now
    story.advance(timedelta(hours=1))
    assert story.decisions("raise") == []


def test_door_in_daytime_raises_nothing() -> None:
    story = Story(home(), local(MONDAY, "14:00"))
    story.event("door", "door", open=True)
    story.advance(timedelta(minutes=45))
    assert story.decisions() == []


def test_the_night_window_wraps_midnight_and_ends_at_seven() -> None:
    for hhmm, pending in (
        ("21:59", False),
        ("22:00", True),
        ("23:59", True),
        ("00:00", True),
        ("06:59", True),
        ("07:00", False),
        ("12:00", False),
    ):
        story = Story(home(), local(MONDAY, hhmm))
        story.event("door", "door", open=True)
        assert (story.state["door"] is not None) is pending, hhmm


def test_a_night_window_that_does_not_wrap() -> None:
    story = Story(home(night_start="01:00", night_end="05:00"), local(MONDAY, "00:30"))
    story.event("door", "door", open=True)
    assert story.state["door"] is None
    story.advance(timedelta(hours=1))
    story.event("door", "door", open=True)
    assert story.advance(timedelta(minutes=10)) == [
        ("raise", "door_night", "yellow", "door", "01:40")
    ]


def test_door_grace_counts_real_minutes_over_the_spring_dst_change() -> None:
    """29 March 2026: 02:00 CET becomes 03:00 CEST. Out at 01:55, alarm 10 real minutes later."""
    story = Story(home(), local("2026-03-29", "01:55"))
    story.event("door", "door", open=True)
    assert story.advance(timedelta(hours=1)) == [("raise", "door_night", "yellow", "door", "03:05")]


def test_door_grace_counts_real_minutes_over_the_autumn_dst_change() -> None:
    """25 October 2026: 03:00 CEST becomes 02:00 CET. Out at 02:55 CEST, alarm at 02:05 CET."""
    story = Story(home(), local("2026-10-25", "02:55"))  # fold=0: the first 02:55 (CEST)
    story.event("door", "door", open=True)
    fired = story.advance(timedelta(hours=1))
    assert fired == [("raise", "door_night", "yellow", "door", "02:05")]
    assert story.now - local("2026-10-25", "02:55") == timedelta(hours=1)


def test_fifty_minutes_in_the_bathroom_at_night() -> None:
    story = Story(home(), local(MONDAY, "01:00"))
    story.event("m-bath", "motion", motion=True)
    story.advance(timedelta(minutes=10))
    story.event("m-bath", "motion", motion=True)  # still there: the clock is not restarted
    assert story.advance(timedelta(minutes=40)) == [
        ("raise", "bathroom_long", "yellow", "m-bath", "01:45")
    ]
    assert story.decisions() == [("raise", "bathroom_long", "yellow", "m-bath", "01:45")]


def test_a_bathroom_visit_ended_by_motion_in_the_bedroom_raises_nothing() -> None:
    story = Story(home(), local(MONDAY, "01:00"))
    story.event("m-bath", "motion", motion=True)
    story.advance(timedelta(minutes=20))
    story.event("m-bed", "motion", motion=True)
    assert story.state["bathroom"] is None
    story.advance(timedelta(hours=2))
    assert story.decisions() == []


def test_the_bathroom_in_daytime_is_no_visit() -> None:
    story = Story(home(), local(MONDAY, "13:00"))
    story.event("m-bath", "motion", motion=True)
    story.advance(timedelta(hours=2))
    assert story.decisions() == []


def test_a_bathroom_visit_over_the_autumn_dst_change_lasts_45_real_minutes() -> None:
    story = Story(home(), local("2026-10-25", "02:30"))  # 02:30 CEST
    story.event("m-bath", "motion", motion=True)
    assert story.advance(timedelta(hours=1)) == [
        ("raise", "bathroom_long", "yellow", "m-bath", "02:15")  # 02:15 CET
    ]


def test_next_due_is_always_the_earliest_pending_deadline() -> None:
    story = Story(home(), local(TUESDAY, "01:00"))
    story.event("m-bath", "motion", motion=True)  # bathroom due 01:45
    assert story.next_due == local(TUESDAY, "01:45")
    story.advance(timedelta(minutes=30))
    story.event("door", "door", open=True)  # door due 01:40 — earlier
    assert story.next_due == local(TUESDAY, "01:40")
    fired = story.run_until(local(TUESDAY, "01:41"))
    assert fired == [("raise", "door_night", "yellow", "door", "01:40")]
    assert story.next_due == local(TUESDAY, "01:45")
    assert story.run_until(local(TUESDAY, "01:50")) == [
        ("raise", "bathroom_long", "yellow", "m-bath", "01:45")
    ]
    # left: supervision (interval + grace after the last heartbeat, 01:45) and the stopwatch
    assert story.next_due is not None
    assert story.next_due == local(TUESDAY, "01:45") + timedelta(seconds=3660)
