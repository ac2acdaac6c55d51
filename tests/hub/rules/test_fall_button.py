"""Fall and alarm-button rules: red at once, maybe_fall only noted, the resident's cancel."""

from __future__ import annotations

from datetime import timedelta

from tests.hub.rules.kari import Story, home, local

MONDAY = "2026-01-05"


def test_kari_falls_and_a_red_alarm_opens_at_once() -> None:
    story = Story(home(), local(MONDAY, "14:32"))
    assert story.event("fall", "fall", fall_state="fall", confidence=0.93) == [
        ("raise", "fall", "red", "fall", "14:32")
    ]
    story.advance(timedelta(hours=1))
    assert story.decisions() == [("raise", "fall", "red", "fall", "14:32")]


def test_a_fall_without_a_fall_state_is_a_fall() -> None:
    story = Story(home(), local(MONDAY, "14:32"))
    assert story.event("fall", "fall") == [("raise", "fall", "red", "fall", "14:32")]


def test_a_radar_maybe_fall_is_only_noted() -> None:
    story = Story(home(), local(MONDAY, "03:00"))
    assert story.event("fall", "fall", fall_state="maybe_fall") == [("note", "fall", "03:00")]
    assert "maybe_fall" in story.notes[0]


def test_a_fall_under_the_minimum_confidence_is_noted_and_one_above_alarms() -> None:
    story = Story(home(fall_min_confidence=0.7), local(MONDAY, "10:00"))
    assert story.event("fall", "fall", fall_state="fall", confidence=0.4) == [
        ("note", "fall", "10:00")
    ]
    story.advance(timedelta(minutes=1))
    assert story.event("fall", "fall", fall_state="fall", confidence=0.7) == [
        ("raise", "fall", "red", "fall", "10:01")
    ]


def test_a_fall_sensor_repeating_fall_raises_each_time_for_the_lifecycle_to_join() -> None:
    story = Story(home(), local(MONDAY, "14:32"))
    story.event("fall", "fall", fall_state="fall")
    story.advance(timedelta(seconds=30))
    story.event("fall", "fall", fall_state="fall")
    assert story.decisions() == [
        ("raise", "fall", "red", "fall", "14:32"),
        ("raise", "fall", "red", "fall", "14:32"),
    ]


def test_kari_presses_her_button() -> None:
    story = Story(home(), local(MONDAY, "09:00"))
    assert story.event("button", "button", action="press") == [
        ("raise", "button", "red", "button", "09:00")
    ]


def test_kari_cancels_her_button_press_in_time() -> None:
    story = Story(home(), local(MONDAY, "09:00"))
    story.event("button", "button", action="press")
    story.advance(timedelta(seconds=60))  # the last second of the cancel window
    assert story.event("button", "button", action="cancel") == [
        ("cancel", "button", "cancelled by the resident", "09:01")
    ]
    assert story.decisions("raise") == [("raise", "button", "red", "button", "09:00")]


def test_a_cancel_too_late_is_noted_and_the_alarm_stays() -> None:
    story = Story(home(), local(MONDAY, "09:00"))
    story.event("button", "button", action="press")
    story.advance(timedelta(seconds=61))
    assert story.event("button", "button", action="cancel") == [("note", "button", "09:01")]
    assert "stays open" in story.notes[-1]
    assert story.decisions("cancel") == []


def test_a_cancel_without_a_press_is_only_noted() -> None:
    story = Story(home(), local(MONDAY, "09:00"))
    assert story.event("button", "button", action="cancel") == [("note", "button", "09:00")]
