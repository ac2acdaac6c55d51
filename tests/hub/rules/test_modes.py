"""Absence mode and test mode, and odd input that must never stop the rules."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hub.rules.engine import evaluate_due, evaluate_observation, initial_state
from hub.rules.model import Note, Observation
from tests.hub.rules.kari import KARI_DEVICES, Story, home, local

MONDAY = "2026-01-05"


def test_absence_suppresses_door_bathroom_and_inactivity_but_not_a_fall_or_the_button() -> None:
    away_until = local("2026-01-12", "12:00")
    story = Story(home(absence_until=away_until), local(MONDAY, "02:10"))
    story.event("door", "door", open=True)
    story.event("m-bath", "motion", motion=True)
    assert story.state["door"] is None and story.state["bathroom"] is None
    assert story.advance(timedelta(hours=30)) == []
    assert story.event("fall", "fall", fall_state="fall") == [
        ("raise", "fall", "red", "fall", "08:10")
    ]
    assert story.event("button", "button", action="press") == [
        ("raise", "button", "red", "button", "08:10")
    ]


def test_absence_keeps_supervision_on() -> None:
    story = Story(home(absence_until=local("2026-01-12", "12:00")), local(MONDAY, "12:00"))
    assert story.event("fall", "status", online=False) == [
        ("raise", "device_offline", "red", "fall", "12:00")
    ]


def test_inactivity_counts_afresh_from_the_end_of_absence() -> None:
    story = Story(home(absence_until=local(MONDAY, "14:00")), local(MONDAY, "08:00"))
    story.event("m-living", "motion", motion=True)
    assert story.next_due == local(MONDAY, "09:01")  # supervision first; absence end at 14:00
    assert story.run_until(local("2026-01-06", "02:01")) == [
        ("prealarm", "inactivity", "02:00", "01:55"),
        ("raise", "inactivity", "yellow", None, "02:00"),
    ]


def test_a_prealarm_out_when_absence_begins_is_withdrawn() -> None:
    story = Story(home(), local(MONDAY, "08:00"))
    story.event("m-living", "motion", motion=True)
    story.run_until(local(MONDAY, "19:56"))
    story.ctx = replace(story.ctx, absence_until=local("2026-01-10", "12:00"))
    assert story.event("fall", "status", online=True) == [
        ("prealarm_cancelled", "inactivity", "19:56")
    ]
    assert story.advance(timedelta(days=2)) == []


def test_a_device_in_test_mode_is_ignored_and_not_supervised() -> None:
    until, seen = local(MONDAY, "15:00"), local(MONDAY, "12:00")
    devices = tuple(
        replace(d, test_mode_until=until, last_seen_at=seen) if d.id in ("fall", "button") else d
        for d in KARI_DEVICES
    )
    story = Story(home(devices), local(MONDAY, "12:00"))
    assert story.event("fall", "fall", fall_state="fall", battery=5) == []
    assert story.event("button", "button", action="press") == []
    assert story.event("button", "status", online=False) == []
    story.silent.update({"fall", "button"})
    assert story.run_until(local(MONDAY, "14:59")) == []
    # test mode over: supervised again, and they have been silent since 12:00
    assert story.run_until(local(MONDAY, "15:01")) == [
        ("raise", "device_offline", "red", "fall", "15:00"),
        ("raise", "device_offline", "red", "button", "15:00"),
    ]


def test_odd_input_becomes_notes_and_never_raises() -> None:
    ctx = home()
    now = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    state = initial_state()
    odd = [
        Observation("ghost", "motion", now, {"motion": True}),
        Observation("m-bed", "smell", now, {}),
        Observation("m-bed", "motion", now, {"motion": "yes"}),
        Observation("door", "door", now, {}),
        Observation("button", "button", now, {"action": "dance"}),
        Observation("fall", "fall", now, {"fall_state": "none", "confidence": "high"}),
        Observation("m-bed", "motion", now.replace(tzinfo=None), {"battery": "low"}),
    ]
    for obs in odd:
        result = evaluate_observation(ctx, state, obs, now)
        assert all(isinstance(d, Note) for d in result.decisions), obs
        assert not any("internal error" in d.text for d in result.decisions if isinstance(d, Note))
        state = result.state
    damaged = {"version": 1, "door": {"opened_at": "yesterday"}, "devices": {"m-bed": 3}}
    result = evaluate_due(ctx, damaged, now)
    assert not any(isinstance(d, Note) and "internal" in d.text for d in result.decisions)
    assert evaluate_due(ctx, "nonsense", now).state["version"] == 1  # type: ignore[arg-type]


def test_the_adapters_prealarm_key_is_kept() -> None:
    state = {**initial_state(), "_prealarm": {"type": "inactivity", "fires_at": "x"}}
    result = evaluate_due(home(), state, local(MONDAY, "12:00"))
    assert result.state["_prealarm"] == {"type": "inactivity", "fires_at": "x"}
