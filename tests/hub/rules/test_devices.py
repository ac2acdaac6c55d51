"""Device supervision, last will, low battery and tamper: technical alarms once per condition."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from hub.storage.models import DeviceType
from tests.hub.rules.kari import KARI_DEVICES, Story, device, home, local

MONDAY = "2026-01-05"


def test_a_motion_sensor_that_goes_silent_raises_one_green_alarm_and_clears_when_back() -> None:
    story = Story(home(), local(MONDAY, "12:00"))
    story.event("m-living", "motion", motion=True)
    story.silent.add("m-bed")  # its last heartbeat was at 12:00
    assert story.run_until(local(MONDAY, "15:00")) == [
        ("raise", "device_offline", "green", "m-bed", "13:01")
    ]
    story.silent.clear()
    assert story.event("m-bed", "motion", motion=True) == [
        ("cleared", "device_offline", "m-bed", "15:00")
    ]


def test_a_device_never_seen_is_supervised_from_when_the_rules_first_saw_it() -> None:
    story = Story(home(), local(MONDAY, "12:00"), heartbeats=False)
    story.event("m-living", "motion", motion=True)
    offline = story.run_until(local(MONDAY, "14:00"))
    # nothing at all heard since 12:00 (m-living's motion included): all seven are silent
    assert sorted(offline) == sorted(
        ("raise", "device_offline", "red" if d.id in ("fall", "button") else "green", d.id, "13:01")
        for d in KARI_DEVICES
    )
    assert story.run_until(local(MONDAY, "23:00")) == []  # once per outage


def test_the_only_fall_sensor_going_offline_by_last_will_is_red_at_once() -> None:
    story = Story(home(), local(MONDAY, "12:00"))
    assert story.event("fall", "status", online=False) == [
        ("raise", "device_offline", "red", "fall", "12:00")
    ]
    story.advance(timedelta(minutes=5))
    assert story.event("fall", "status", online=False) == []  # the retained will again
    assert story.event("fall", "status", online=True) == [
        ("cleared", "device_offline", "fall", "12:05")
    ]


def test_a_fall_sensor_with_a_working_twin_or_a_motion_sensor_offline_is_green() -> None:
    devices = (*KARI_DEVICES, device("fall-2", DeviceType.FALL_SENSOR, "living"))
    story = Story(home(devices), local(MONDAY, "12:00"))
    assert story.event("fall", "status", online=False) == [
        ("raise", "device_offline", "green", "fall", "12:00")
    ]
    assert story.event("m-bath", "status", online=False) == [
        ("raise", "device_offline", "green", "m-bath", "12:00")
    ]
    # the twin goes too: now nothing protects Kari from an unnoticed fall
    assert story.event("fall-2", "status", online=False) == [
        ("raise", "device_offline", "red", "fall-2", "12:00")
    ]


def test_the_only_button_silent_is_red() -> None:
    story = Story(home(), local(MONDAY, "12:00"))
    story.event("m-living", "motion", motion=True)
    story.silent.add("button")
    assert story.run_until(local(MONDAY, "13:30")) == [
        ("raise", "device_offline", "red", "button", "13:01")
    ]


def test_low_battery_raises_once_and_clears_with_hysteresis() -> None:
    story = Story(home(), local(MONDAY, "12:00"))
    assert story.event("m-living", "motion", motion=True, battery=15) == [
        ("raise", "low_battery", "green", "m-living", "12:00")
    ]
    story.advance(timedelta(minutes=5))
    assert story.event("m-living", "motion", motion=True, battery=14) == []
    assert story.event("m-living", "motion", motion=True, battery=22) == []  # under 20 + 5
    assert story.event("m-living", "motion", motion=True, battery=25) == [
        ("cleared", "low_battery", "m-living", "12:05")
    ]
    assert story.event("m-living", "motion", motion=True, battery=19) == [
        ("raise", "low_battery", "green", "m-living", "12:05")
    ]


def test_low_battery_from_the_device_row_when_a_status_report_said_so() -> None:
    devices = tuple(replace(d, battery=12) if d.id == "door" else d for d in KARI_DEVICES)
    story = Story(home(devices), local(MONDAY, "12:00"))
    assert story.event("m-living", "motion", motion=True) == [
        ("raise", "low_battery", "green", "door", "12:00")
    ]
    assert story.advance(timedelta(hours=3)) == []


def test_tamper_raises_once_until_cleared() -> None:
    story = Story(home(), local(MONDAY, "12:00"))
    assert story.event("door", "door", open=False, tamper=True) == [
        ("raise", "tamper", "yellow", "door", "12:00")
    ]
    assert story.event("door", "door", open=False, tamper=True) == []
    assert story.event("door", "door", open=False, tamper=False) == [
        ("cleared", "tamper", "door", "12:00")
    ]
