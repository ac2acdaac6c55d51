"""Inactivity: the stopwatch with its pre-alarm and silence, and the morning window mode."""

from __future__ import annotations

from datetime import timedelta

from tests.hub.rules.kari import Story, home, local

MONDAY = "2026-01-05"
TUESDAY = "2026-01-06"
WEDNESDAY = "2026-01-07"


def test_stopwatch_prealarm_cancelled_by_motion_then_fires_and_stays_silent() -> None:
    story = Story(home(), local(MONDAY, "08:00"))
    story.event("m-living", "motion", motion=True)
    assert story.run_until(local(MONDAY, "19:56")) == [("prealarm", "inactivity", "20:00", "19:55")]
    assert story.event("m-living", "motion", motion=True) == [
        ("prealarm_cancelled", "inactivity", "19:56")
    ]
    assert story.run_until(local(TUESDAY, "07:57")) == [
        ("prealarm", "inactivity", "07:56", "07:51"),
        ("raise", "inactivity", "yellow", None, "07:56"),
    ]
    assert story.advance(timedelta(hours=30)) == []  # silenced until activity resumes
    story.event("m-bed", "motion", motion=True)  # Wednesday 13:57: Kari is up
    assert story.run_until(local(WEDNESDAY, "23:59")) == []
    assert story.run_until(local("2026-01-08", "02:00")) == [
        ("prealarm", "inactivity", "01:57", "01:52"),
        ("raise", "inactivity", "yellow", None, "01:57"),
    ]


def test_a_button_press_and_a_door_are_activity_but_a_fall_is_not() -> None:
    story = Story(home(inactivity_stopwatch_s=3600), local(MONDAY, "08:00"))
    story.event("m-living", "motion", motion=True)
    story.run_until(local(MONDAY, "08:56"))
    assert story.event("button", "button", action="press") == [
        ("prealarm_cancelled", "inactivity", "08:56"),
        ("raise", "button", "red", "button", "08:56"),
    ]
    story.run_until(local(MONDAY, "09:55"))
    assert story.event("door", "door", open=False) == [
        ("prealarm_cancelled", "inactivity", "09:55")
    ]
    story.run_until(local(MONDAY, "10:51"))
    story.event("fall", "fall", fall_state="maybe_fall")
    assert story.run_until(local(MONDAY, "11:00"))[-1] == (
        "raise",
        "inactivity",
        "yellow",
        None,
        "10:55",
    )


def test_a_new_resident_is_not_alarmed_before_the_first_observation() -> None:
    story = Story(home(), local(MONDAY, "08:00"))
    assert story.wake_late(local(TUESDAY, "12:00")) == []
    story.event("m-bed", "motion", motion=False)  # the first observation: counting starts
    assert story.run_until(local(TUESDAY, "23:56")) == [
        ("prealarm", "inactivity", "00:00", "23:55")
    ]


def test_the_stopwatch_fires_once_when_the_hub_comes_back_late() -> None:
    story = Story(home(), local(MONDAY, "08:00"))
    story.event("m-living", "motion", motion=True)
    assert story.wake_late(local(TUESDAY, "09:00")) == [
        ("raise", "inactivity", "yellow", None, "09:00")
    ]
    assert story.wake_late(local(TUESDAY, "10:00")) == []


def window_home() -> Story:
    ctx = home(inactivity_stopwatch_enabled=False, inactivity_window_enabled=True)
    return Story(ctx, local(MONDAY, "05:00"))


def test_window_mode_alarms_when_kari_is_not_up_by_ten() -> None:
    story = window_home()
    story.event("m-bed", "motion", motion=False)  # the hub hears from the home at 05:00
    assert story.run_until(local(MONDAY, "10:05")) == [
        ("prealarm", "inactivity", "10:00", "09:55"),
        ("raise", "inactivity", "yellow", None, "10:00"),
    ]
    assert story.run_until(local(TUESDAY, "09:54")) == []


def test_window_mode_motion_in_the_window_cancels_for_that_day_only() -> None:
    story = window_home()
    story.event("m-bed", "motion", motion=False)
    story.run_until(local(MONDAY, "09:57"))
    assert story.event("m-bed", "motion", motion=True) == [
        ("prealarm_cancelled", "inactivity", "09:57")
    ]
    assert story.run_until(local(MONDAY, "23:00")) == []
    story.event("m-living", "motion", motion=True)  # activity the evening before does not count
    assert story.run_until(local(TUESDAY, "10:01")) == [
        ("prealarm", "inactivity", "10:00", "09:55"),
        ("raise", "inactivity", "yellow", None, "10:00"),
    ]


def test_window_mode_motion_early_in_the_window_means_no_prealarm_at_all() -> None:
    story = window_home()
    story.event("m-bed", "motion", motion=False)
    story.run_until(local(MONDAY, "06:30"))
    assert story.event("m-bed", "motion", motion=True) == []
    assert story.run_until(local(MONDAY, "12:00")) == []


def test_window_mode_on_the_autumn_dst_day_uses_local_times() -> None:
    ctx = home(inactivity_stopwatch_enabled=False, inactivity_window_enabled=True)
    story = Story(ctx, local("2026-10-25", "01:00"))
    story.event("m-bed", "motion", motion=False)
    assert story.run_until(local("2026-10-25", "10:01")) == [
        ("prealarm", "inactivity", "10:00", "09:55"),
        ("raise", "inactivity", "yellow", None, "10:00"),
    ]
