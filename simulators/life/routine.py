"""Ordinary days: a seeded resident wakes, eats, moves between rooms, goes out, gets visits, sleeps.

``day_events`` is a pure function of (seed, resident, local date): the same inputs always give
the same events, and one day's randomness never shifts another day's.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from devices.events import EventKind
from simulators.life.model import MOTION_KEY, DeviceEvent, ResidentSpec, Room, Routine

# Where a resident goes when nothing is planned, and how much they like each room.
_FREE_ROOMS: tuple[tuple[Room, float], ...] = (
    (Room.LIVING, 0.55),
    (Room.KITCHEN, 0.2),
    (Room.BATHROOM, 0.1),
    (Room.BEDROOM, 0.1),
    (Room.HALL, 0.05),
)


# Rooms nobody stays in for long (minutes, low-high), whatever the routine's room_minutes.
_SHORT_STAYS: dict[Room, tuple[int, int]] = {Room.BATHROOM: (3, 15), Room.HALL: (1, 3)}


@dataclass(frozen=True, slots=True)
class DayPlan:
    """The anchors of one day (UTC), drawn from the routine; exposed for tests and the demo."""

    day: date
    wake: datetime
    bed: datetime
    appointments: tuple[tuple[str, datetime, datetime], ...]  # (what, start, end), in order
    night_visits: tuple[tuple[datetime, datetime], ...]  # bathroom visits after ``bed``


def day_rng(seed: int, resident: str, day: date) -> random.Random:
    """The random source of one resident's day: independent of every other day."""
    return random.Random(f"{seed}/{resident}/{day.isoformat()}")


def local(day: date, at: time, tz: tzinfo) -> datetime:
    return datetime.combine(day, at, tzinfo=tz)


def _between(rng: random.Random, day: date, low: time, high: time, tz: tzinfo) -> datetime:
    start, end = local(day, low, tz), local(day, high, tz)
    return start + timedelta(seconds=rng.uniform(0, max(0.0, (end - start).total_seconds())))


def _jittered(rng: random.Random, day: date, at: time, jitter: timedelta, tz: tzinfo) -> datetime:
    spread = jitter.total_seconds()
    return local(day, at, tz) + timedelta(seconds=rng.uniform(-spread, spread))


def plan_day(seed: int, resident: ResidentSpec, day: date, tz: tzinfo) -> DayPlan:
    """Draw the day's wake time, bedtime, meals, visits, outing and the following night."""
    rng = day_rng(seed, resident.key, day)
    r = resident.routine
    wake = _between(rng, day, r.wake_earliest, r.wake_latest, tz)
    bed = _between(rng, day, r.bed_earliest, r.bed_latest, tz)
    wanted: list[tuple[str, datetime, timedelta]] = [
        ("breakfast", wake + timedelta(minutes=rng.uniform(10, 25)), _minutes(rng, 20, 40)),
        ("lunch", _jittered(rng, day, r.lunch_at, r.meal_jitter, tz), _minutes(rng, 20, 45)),
        ("dinner", _jittered(rng, day, r.dinner_at, r.meal_jitter, tz), _minutes(rng, 25, 50)),
    ]
    for visit in r.home_care_visits:
        wanted.append(
            ("home care", _jittered(rng, day, visit, r.home_care_jitter, tz), _minutes(rng, 15, 40))
        )
    if rng.random() < r.outing_probability:
        length = _minutes(rng, r.outing_minutes_min, r.outing_minutes_max)
        wanted.append(
            ("outing", _between(rng, day, r.outing_earliest, r.outing_latest, tz), length)
        )
    appointments: list[tuple[str, datetime, datetime]] = []
    cursor = wake + timedelta(minutes=5)
    # one thing at a time: an appointment that overlaps the previous one waits for its end
    latest_end = bed - timedelta(minutes=20)
    for what, start, length in sorted(wanted, key=lambda w: w[1]):
        start = max(start, cursor)
        if start + length > latest_end:
            continue
        appointments.append((what, start, start + length))
        cursor = start + length + timedelta(minutes=2)
    next_wake = _between(
        day_rng(seed, resident.key, day + timedelta(days=1)),
        day + timedelta(days=1),
        r.wake_earliest,
        r.wake_latest,
        tz,
    )
    visits: list[tuple[datetime, datetime]] = []
    asleep_from = bed + timedelta(minutes=60)
    awake_by = next_wake - timedelta(minutes=30)
    count = rng.randint(0, r.night_bathroom_visits_max)
    if awake_by > asleep_from:
        starts = sorted(asleep_from + (awake_by - asleep_from) * rng.random() for _ in range(count))
        last_end = asleep_from
        for start in starts:
            start = max(start, last_end + timedelta(minutes=20))
            length = _minutes(rng, r.night_bathroom_minutes_min, r.night_bathroom_minutes_max)
            if start + length < awake_by:
                visits.append((start, start + length))
                last_end = start + length
    return DayPlan(
        day,
        _utc(wake),
        _utc(bed),
        tuple(_utc_span(a) for a in appointments),
        tuple((_utc(s), _utc(e)) for s, e in visits),
    )


def day_events(seed: int, resident: ResidentSpec, day: date, tz: tzinfo) -> list[DeviceEvent]:
    """The sensor events of one day, from waking on ``day`` until waking the next day."""
    plan = plan_day(seed, resident, day, tz)
    rng = random.Random(f"{seed}/{resident.key}/{day.isoformat()}/moves")
    r = resident.routine
    out = _Recorder(resident.key)
    # morning: out of bed, bathroom, then the day's appointments with free time between them
    t = out.stay(rng, r, plan.wake, plan.wake + _minutes(rng, 2, 6), Room.BEDROOM, "wakes up")
    t = out.stay(rng, r, t, t + _minutes(rng, 8, 18), Room.BATHROOM, "morning toilet")
    for what, start, end in plan.appointments:
        t = _free_time(out, rng, r, t, start)
        t = _appointment(out, rng, r, what, start, end)
    t = _free_time(out, rng, r, t, plan.bed - timedelta(minutes=15))
    t = out.stay(rng, r, t, plan.bed, Room.BATHROOM, "evening toilet")
    out.motion(plan.bed, Room.BEDROOM, "goes to bed")
    # a little turning in bed while falling asleep
    for _ in range(rng.randint(0, 2)):
        out.motion(plan.bed + _minutes(rng, 5, 40), Room.BEDROOM, "restless in bed")
    for start, end in plan.night_visits:
        out.motion(start, Room.BEDROOM, "gets up at night")
        out.stay(rng, r, start + timedelta(seconds=40), end, Room.BATHROOM, "night bathroom visit")
        out.motion(end, Room.BEDROOM, "back to bed")
    return sorted(out.events, key=lambda e: e.at)


def routine_events(
    seed: int, resident: ResidentSpec, start: datetime, end: datetime, tz: tzinfo
) -> list[DeviceEvent]:
    """Normal life between ``start`` and ``end``: every day that touches the period, clipped."""
    first = start.astimezone(tz).date() - timedelta(days=1)  # its night reaches into ``start``
    last = end.astimezone(tz).date()
    events: list[DeviceEvent] = []
    day = first
    while day <= last:
        events.extend(e for e in day_events(seed, resident, day, tz) if start <= e.at < end)
        day += timedelta(days=1)
    return sorted(events, key=lambda e: e.at)


# --- building blocks --------------------------------------------------------------------------


class _Recorder:
    """Collects the events of a day and remembers which room the resident is in."""

    def __init__(self, resident: str) -> None:
        self.resident = resident
        self.events: list[DeviceEvent] = []

    def motion(self, at: datetime, room: Room, why: str = "") -> None:
        self.events.append(
            DeviceEvent(
                _utc(at),
                self.resident,
                MOTION_KEY[room],
                EventKind.MOTION,
                (("motion", True),),
                why,
            )
        )

    def door(self, at: datetime, opened: bool, why: str) -> None:
        self.events.append(
            DeviceEvent(_utc(at), self.resident, "door", EventKind.DOOR, (("open", opened),), why)
        )

    def stay(
        self,
        rng: random.Random,
        routine: Routine,
        start: datetime,
        end: datetime,
        room: Room,
        why: str = "",
    ) -> datetime:
        """Enter ``room`` at ``start`` and move about in it (the PIR re-triggers) until ``end``."""
        if end <= start:
            return start
        self.motion(start, room, why or f"in the {room.value}")
        t = start + _minutes(rng, routine.retrigger_minutes_min, routine.retrigger_minutes_max)
        while t < end:
            self.motion(t, room, why or f"in the {room.value}")
            t += _minutes(rng, routine.retrigger_minutes_min, routine.retrigger_minutes_max)
        return end


def _free_time(
    out: _Recorder, rng: random.Random, r: Routine, start: datetime, end: datetime
) -> datetime:
    """Wander between rooms until ``end``.

    A bathroom or hall visit is short whatever the routine says about sitting: an early model
    drew them from the living room's 10-75 min and sent a resident to the bathroom for 78 min
    at 22:00 in a "normal" week (a long-bathroom alarm the rules were right to raise).
    """
    t = start
    rooms, weights = zip(*_FREE_ROOMS, strict=True)
    previous: Room | None = None
    while end - t > timedelta(minutes=1):
        room = rng.choices(rooms, weights)[0]
        if room is previous:
            continue
        low, high = _SHORT_STAYS.get(room, (r.room_minutes_min, r.room_minutes_max))
        stay = min(_minutes(rng, low, high), end - t)
        t = out.stay(rng, r, t, t + stay, room)
        previous = room
    return max(t, start)


def _appointment(
    out: _Recorder,
    rng: random.Random,
    r: Routine,
    what: str,
    start: datetime,
    end: datetime,
) -> datetime:
    if what in ("breakfast", "lunch", "dinner"):
        return out.stay(rng, r, start, end, Room.KITCHEN, what)
    if what == "home care":
        # the nurse rings, the resident opens, both go in; at the end she lets herself out
        out.motion(start, Room.HALL, "home care arrives")
        out.door(start + timedelta(seconds=30), True, "lets home care in")
        out.door(start + timedelta(seconds=50), False, "home care is in")
        t = out.stay(
            rng,
            r,
            start + timedelta(seconds=70),
            end - timedelta(minutes=2),
            rng.choice((Room.KITCHEN, Room.LIVING, Room.BATHROOM)),
            "home care visit",
        )
        out.motion(t, Room.HALL, "home care leaves")
        out.door(t + timedelta(seconds=20), True, "home care leaves")
        out.door(t + timedelta(seconds=35), False, "home care has left")
        return out.stay(rng, r, t + timedelta(seconds=60), end, Room.LIVING)
    if what == "outing":
        out.motion(start, Room.HALL, "puts on a coat")
        out.door(start + timedelta(minutes=2), True, "goes out")
        out.door(start + timedelta(minutes=2, seconds=10), False, "has gone out")
        back = end - timedelta(minutes=3)
        out.door(back, True, "comes home")
        out.door(back + timedelta(seconds=15), False, "is home")
        out.motion(back + timedelta(seconds=30), Room.HALL, "takes off the coat")
        return out.stay(
            rng, r, back + timedelta(minutes=2), end, Room.KITCHEN, "puts away shopping"
        )
    raise ValueError(f"unknown appointment {what!r}")


def _minutes(rng: random.Random, low: float, high: float) -> timedelta:
    return timedelta(seconds=round(rng.uniform(low, high) * 60))


def _utc(at: datetime) -> datetime:
    return at.astimezone(UTC)


def _utc_span(a: tuple[str, datetime, datetime]) -> tuple[str, datetime, datetime]:
    return (a[0], _utc(a[1]), _utc(a[2]))
