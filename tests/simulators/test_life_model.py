"""The resident model (pure): deterministic per seed, plausible days, incidents and faults that
produce exactly the messages they describe."""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.events import EventKind
from hub.storage.models import Protocol
from simulators.life import (
    Absence,
    AbsenceRegistered,
    BatteryDrain,
    BrokerRestart,
    BrokerRestartFault,
    ButtonPress,
    Control,
    DeviceDies,
    DeviceEvent,
    Duplicates,
    Fall,
    Incident,
    LongBathroomVisit,
    MaybeFall,
    NightWandering,
    NotGettingUp,
    OutOfOrder,
    Publish,
    RadioDropout,
    ResidentSpec,
    Routine,
    plan_day,
    resident_happenings,
    simulate,
)
from simulators.life.model import HOME_DEVICES, format_duration, parse_duration

OSLO = ZoneInfo("Europe/Oslo")
MONDAY = datetime(2026, 1, 5, tzinfo=OSLO)
KARI = ResidentSpec(key="kari")
OLA = ResidentSpec(key="ola", protocol=Protocol.ZIGBEE2MQTT)


def at(day: int, hh: int, mm: int = 0, ss: int = 0) -> datetime:
    return (MONDAY + timedelta(days=day)).replace(hour=hh, minute=mm, second=ss)


def local_time(d: datetime) -> time:
    return d.astimezone(OSLO).time()


def is_night(d: datetime) -> bool:
    t = local_time(d)
    return t >= time(22) or t < time(7)


def events_of(
    resident: ResidentSpec,
    start: datetime,
    end: datetime,
    seed: int = 1,
    incidents: Sequence[Incident] = (),
) -> list[DeviceEvent]:
    return [
        h
        for h in resident_happenings(seed, resident, start, end, incidents)
        if isinstance(h, DeviceEvent)
    ]


def body(p: Publish) -> Any:
    text = p.message.text
    return text if text in ("online", "offline") else json.loads(text)


# --- determinism ------------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_messages_byte_for_byte() -> None:
    one = simulate([KARI, OLA], at(0, 0), at(3, 0), seed=7)
    two = simulate([KARI, OLA], at(0, 0), at(3, 0), seed=7)
    assert [(d.at, d.message.topic, d.message.payload) for d in one.publishes] == [
        (d.at, d.message.topic, d.message.payload) for d in two.publishes
    ]
    other = simulate([KARI, OLA], at(0, 0), at(3, 0), seed=8)
    assert [d.at for d in other.publishes] != [d.at for d in one.publishes]


def test_a_day_does_not_depend_on_the_period_it_is_simulated_in() -> None:
    """Days are seeded on their own: Wednesday is the same in a 3-day and a 7-day run."""
    short = events_of(KARI, at(1, 0), at(3, 0))
    week = events_of(KARI, at(0, 0), at(7, 0))
    wednesday = [e for e in week if at(2, 0) <= e.at < at(3, 0)]
    assert wednesday == [e for e in short if at(2, 0) <= e.at < at(3, 0)]
    assert wednesday


def test_deliveries_are_in_time_order_and_inside_the_period() -> None:
    sim = simulate([KARI], at(0, 6), at(2, 6), seed=3)
    times = [d.at for d in sim.deliveries]
    assert times == sorted(times)
    assert at(0, 6) <= times[0] and times[-1] < at(2, 6)


# --- plausible routines -----------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), offset=st.integers(0, 364))
def test_wakes_inside_the_routine_window_and_sleeps_at_night(seed: int, offset: int) -> None:
    day = date(2026, 1, 1) + timedelta(days=offset)
    routine = KARI.routine
    plan = plan_day(seed, KARI, day, OSLO)
    assert routine.wake_earliest <= local_time(plan.wake) <= routine.wake_latest
    assert routine.bed_earliest <= local_time(plan.bed) <= routine.bed_latest
    next_wake = plan_day(seed, KARI, day + timedelta(days=1), OSLO).wake
    for start, end in plan.night_visits:
        # asleep at least an hour before, back in bed at least half an hour before getting up
        assert plan.bed + timedelta(hours=1) <= start < end <= next_wake - timedelta(minutes=30)
        assert end - start <= timedelta(minutes=routine.night_bathroom_minutes_max)
    for what, start, end in plan.appointments:
        assert plan.wake < start < end < plan.bed, what


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_a_normal_week_never_looks_like_an_incident(seed: int) -> None:
    """What the default rules watch for never happens in ordinary life: no door opened at
    night, no night bathroom stay near 45 minutes, never 12 hours without moving."""
    for resident in (KARI, OLA):
        events = events_of(resident, at(0, 0), at(7, 0), seed=seed)
        opened = [e for e in events if e.kind is EventKind.DOOR and e.field("open")]
        assert opened, "home care comes and goes through the door"
        assert not [e for e in opened if is_night(e.at)]
        bathroom_since: datetime | None = None
        for e in events:
            if e.kind is not EventKind.MOTION:
                continue
            if e.device == "m-bath":
                if bathroom_since is None and is_night(e.at):
                    bathroom_since = e.at
                if bathroom_since is not None:
                    assert e.at - bathroom_since < timedelta(minutes=35), e
            else:
                bathroom_since = None
        gaps = [b.at - a.at for a, b in itertools.pairwise(events)]
        # bed 21:30 at the earliest, up 08:30 at the latest: 11 h, under the 12 h stopwatch
        assert max(gaps) <= timedelta(hours=11)


def test_routine_tweaks_move_the_day() -> None:
    early = ResidentSpec(
        key="cecilie", routine=Routine(wake_earliest=time(5, 0), wake_latest=time(5, 30))
    )
    for offset in range(7):
        plan = plan_day(1, early, date(2026, 1, 5) + timedelta(days=offset), OSLO)
        assert time(5, 0) <= local_time(plan.wake) <= time(5, 30)
    nobody = ResidentSpec(key="frode", routine=Routine(home_care_visits=(), outing_probability=0))
    doors = [e for e in events_of(nobody, at(0, 0), at(7, 0)) if e.kind is EventKind.DOOR]
    assert doors == []


def test_a_routine_with_wake_after_bedtime_is_refused() -> None:
    with pytest.raises(ValueError, match="wake_latest"):
        Routine(wake_latest=time(23, 0), bed_earliest=time(22, 0))


def test_every_device_is_heard_well_inside_its_supervision_interval() -> None:
    sim = simulate([KARI, OLA], at(0, 0), at(2, 0), seed=5)
    for resident in ("kari", "ola"):
        for spec in HOME_DEVICES:
            times = [at(0, 0)] + [
                p.at for p in sim.publishes if (p.resident, p.device) == (resident, spec.key)
            ]
            gaps = [b - a for a, b in itertools.pairwise(times)]
            assert max(gaps) <= timedelta(minutes=50), (resident, spec.key)


def test_native_and_zigbee2mqtt_homes_speak_their_own_topics() -> None:
    sim = simulate([KARI, OLA], at(0, 8), at(0, 12), seed=2)
    kari = {p.message.topic.split("/")[0] for p in sim.publishes if p.resident == "kari"}
    ola = {p.message.topic.split("/")[0] for p in sim.publishes if p.resident == "ola"}
    assert kari == {"carehub"} and ola == {"zigbee2mqtt"}
    seqs = [
        body(p)["seq"]
        for p in sim.publishes
        if p.device == "m-living" and p.resident == "kari" and p.message.topic.endswith("/event")
    ]
    assert seqs == list(range(1, len(seqs) + 1))


# --- incidents --------------------------------------------------------------------------------


def test_a_fall_is_reported_at_its_time_and_the_resident_lies_still_until_help_comes() -> None:
    fall = Fall(id="f", resident="kari", at=at(0, 14, 32), lie_for=timedelta(minutes=25))
    events = events_of(KARI, at(0, 8), at(0, 20), incidents=[fall])
    falls = [e for e in events if e.kind is EventKind.FALL]
    assert [(e.at, e.field("fall_status")) for e in falls] == [(at(0, 14, 32), "fall")]
    lying = [e for e in events if at(0, 14, 32) < e.at < at(0, 14, 57)]
    assert lying == []
    helped = [e for e in events if at(0, 14, 57) <= e.at < at(0, 15, 0)]
    assert helped[0].kind is EventKind.DOOR and helped[0].field("open") is True


def test_a_radar_can_say_maybe_fall_first_but_a_native_sensor_cannot() -> None:
    fall = Fall(id="f", resident="ola", at=at(0, 13), maybe_fall_first=True)
    falls = [
        e
        for e in events_of(OLA, at(0, 12), at(0, 16), incidents=[fall])
        if e.kind is EventKind.FALL
    ]
    assert [(e.at, e.field("fall_status")) for e in falls] == [
        (at(0, 12, 59, 40), "maybe_fall"),
        (at(0, 13), "fall"),
    ]
    sim = simulate([OLA], at(0, 12), at(0, 16), incidents=[fall])
    radar = [
        body(p)
        for p in sim.publishes
        if p.device == "fall" and p.message.topic == "zigbee2mqtt/ola-fall"
    ]
    assert [b["fall_down_status"] for b in radar] == ["maybe_fall", "fall"]
    with pytest.raises(ValueError, match="radar"):
        events_of(
            KARI, at(0, 12), at(0, 16), incidents=[fall.model_copy(update={"resident": "kari"})]
        )
    only_maybe = MaybeFall(id="m", resident="ola", at=at(0, 13))
    falls = [
        e
        for e in events_of(OLA, at(0, 12), at(0, 16), incidents=[only_maybe])
        if e.kind is EventKind.FALL
    ]
    assert [e.field("fall_status") for e in falls] == ["maybe_fall"]


def test_a_button_press_and_its_cancel() -> None:
    press = ButtonPress(
        id="b", resident="kari", at=at(0, 9, 40), cancel_after=timedelta(seconds=20)
    )
    sim = simulate([KARI], at(0, 8), at(0, 11), incidents=[press])
    button = [
        (p.at, body(p)["action"])
        for p in sim.publishes
        if p.device == "button" and p.message.topic.endswith("/event")
    ]
    assert button == [(at(0, 9, 40), "press"), (at(0, 9, 40, 20), "cancel")]


def test_night_wandering_opens_the_door_at_night_and_the_home_is_quiet_until_the_return() -> None:
    out = NightWandering(id="w", resident="kari", at=at(1, 2, 10), back_after=timedelta(minutes=40))
    events = events_of(KARI, at(0, 20), at(1, 8), incidents=[out])
    doors = [(e.at, e.field("open")) for e in events if e.kind is EventKind.DOOR]
    assert doors == [
        (at(1, 2, 10), True),
        (at(1, 2, 10, 15), False),
        (at(1, 2, 50), True),
        (at(1, 2, 50, 15), False),
    ]
    assert [e for e in events if at(1, 2, 10, 15) < e.at < at(1, 2, 50)] == []


def test_a_long_bathroom_visit_has_bathroom_motion_only() -> None:
    visit = LongBathroomVisit(id="l", resident="kari", at=at(1, 1, 30), duration=timedelta(hours=1))
    events = events_of(KARI, at(0, 20), at(1, 8), incidents=[visit])
    during = [e for e in events if at(1, 1, 30) <= e.at < at(1, 2, 30)]
    assert during and {e.device for e in during} == {"m-bath"}
    assert during[0].at == at(1, 1, 30)
    after = [e for e in events if e.at >= at(1, 2, 30)]
    assert after[0].device == "m-bed"


def test_not_getting_up_is_stillness_then_the_bedroom() -> None:
    still = NotGettingUp(id="n", resident="kari", at=at(1, 2), still_for=timedelta(hours=11))
    events = events_of(KARI, at(0, 20), at(1, 20), incidents=[still])
    assert [e for e in events if at(1, 2) <= e.at < at(1, 13)] == []
    assert [e.device for e in events if e.at == at(1, 13)] == ["m-bed"]


def test_a_registered_absence_is_a_control_for_the_runner_and_the_home_is_empty() -> None:
    away = Absence(id="a", resident="kari", at=at(0, 11), duration=timedelta(days=2))
    sim = simulate([KARI], at(0, 8), at(3, 8), incidents=[away])
    controls = [d for d in sim.deliveries if isinstance(d, Control)]
    assert [c.action for c in controls] == [AbsenceRegistered(at(0, 11, 1), "kari", at(2, 11))]
    inside = [p for p in sim.publishes if at(0, 11, 1) < p.at < at(2, 11)]
    assert inside and {p.note for p in inside} == {"heartbeat"}
    unregistered = simulate(
        [KARI], at(0, 8), at(3, 8), incidents=[away.model_copy(update={"registered": False})]
    )
    assert not [d for d in unregistered.deliveries if isinstance(d, Control)]


# --- faults -----------------------------------------------------------------------------------


def test_battery_drain_shows_in_the_payloads() -> None:
    drain = BatteryDrain(
        id="d",
        resident="kari",
        device="m-living",
        at=at(0, 9),
        from_pct=30,
        to_pct=10,
        over=timedelta(hours=6),
    )
    sim = simulate([KARI], at(0, 7), at(0, 19), faults=[drain])
    levels = [(p.at, body(p)["battery"]) for p in sim.publishes if p.device == "m-living"]
    assert all(b == 30 for t, b in levels if t <= at(0, 9))
    assert all(b == 10 for t, b in levels if t >= at(0, 15))
    after = [b for t, b in levels if at(0, 9) < t < at(0, 15)]
    assert after == sorted(after, reverse=True)
    others = {
        body(p).get("battery")
        for p in sim.publishes
        if p.resident == "kari" and p.device != "m-living"
    }
    assert others == {100}


def test_a_radio_drop_out_loses_messages_then_the_device_reconnects() -> None:
    drop = RadioDropout(
        id="r", resident="kari", device="m-bath", at=at(0, 11), duration=timedelta(hours=3)
    )
    plain = simulate([KARI], at(0, 8), at(0, 18), seed=4)
    faulty = simulate([KARI], at(0, 8), at(0, 18), seed=4, faults=[drop])
    lost = [p for p in plain.publishes if p.device == "m-bath" and at(0, 11) <= p.at < at(0, 14)]
    assert lost
    bath = [p for p in faulty.publishes if p.device == "m-bath"]
    assert not [p for p in bath if at(0, 11) <= p.at < at(0, 14)]
    back = [p for p in bath if p.at == at(0, 14)]
    assert [(p.note, body(p)) for p in back] == [("reconnects", {"online": True, "battery": 100})]


def test_a_dead_device_goes_silent_or_leaves_its_will() -> None:
    dead = DeviceDies(id="x", resident="ola", device="button", at=at(0, 10))
    sim = simulate([OLA], at(0, 8), at(0, 16), faults=[dead])
    assert not [p for p in sim.publishes if p.device == "button" and p.at >= at(0, 10)]
    with_will = simulate(
        [OLA], at(0, 8), at(0, 16), faults=[dead.model_copy(update={"will": True})]
    )
    after = [p for p in with_will.publishes if p.device == "button" and p.at >= at(0, 10)]
    assert [(p.message.topic, p.message.text, p.message.retain) for p in after] == [
        ("zigbee2mqtt/ola-button/availability", "offline", True)
    ]


def test_duplicates_repeat_each_message_of_the_window_unchanged() -> None:
    dup = Duplicates(id="d", resident="kari", at=at(0, 14), duration=timedelta(hours=1))
    plain = simulate([KARI], at(0, 12), at(0, 17), seed=9)
    faulty = simulate([KARI], at(0, 12), at(0, 17), seed=9, faults=[dup])
    window = [p for p in plain.publishes if at(0, 14) <= p.at < at(0, 15)]
    assert window
    assert len(faulty.publishes) == len(plain.publishes) + len(window)
    for p in window:
        copies = [
            q
            for q in faulty.publishes
            if q.message == p.message and abs(q.at - p.at) < timedelta(minutes=1)
        ]
        assert [q.at - p.at for q in copies] == [timedelta(0), timedelta(seconds=2)]


def test_out_of_order_delivers_an_older_event_after_a_newer_one() -> None:
    late = OutOfOrder(id="o", resident="kari", at=at(0, 8), duration=timedelta(hours=10))
    sim = simulate([KARI], at(0, 8), at(0, 18), seed=9, faults=[late])
    events = [p for p in sim.publishes if p.message.topic.endswith("/event")]
    stamps = [datetime.fromisoformat(body(p)["ts"]) for p in events]
    overtaken = [(a, b) for a, b in itertools.pairwise(stamps) if b < a]
    assert overtaken, "some event arrives after a newer one"
    assert all(a - b <= timedelta(minutes=2) for a, b in overtaken)


def test_a_broker_restart_is_a_control_at_its_time() -> None:
    restart = BrokerRestartFault(id="r", at=at(0, 14))
    sim = simulate([KARI], at(0, 12), at(0, 16), faults=[restart])
    assert [d.action for d in sim.deliveries if isinstance(d, Control)] == [
        BrokerRestart(at(0, 14).astimezone(UTC))
    ]


def test_incidents_for_unknown_residents_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown residents: per"):
        simulate(
            [KARI], at(0, 8), at(0, 9), incidents=[ButtonPress(id="b", resident="per", at=at(0, 8))]
        )


# --- durations --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "delta"),
    [
        ("45m", timedelta(minutes=45)),
        ("1h30m", timedelta(minutes=90)),
        ("1d", timedelta(days=1)),
        ("90s", timedelta(seconds=90)),
        (600, timedelta(minutes=10)),
    ],
)
def test_durations_are_written_like_people_say_them(text: object, delta: timedelta) -> None:
    assert parse_duration(text) == delta


def test_a_bad_duration_says_how_to_write_one() -> None:
    with pytest.raises(ValueError, match="45m, 2h"):
        parse_duration("an hour")
    assert format_duration(timedelta(hours=1, minutes=5)) == "1h05m"
