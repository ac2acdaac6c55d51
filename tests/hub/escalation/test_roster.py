"""Who is on duty: shift coverage by the local wall clock (DST nights too), overrides, swaps."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.orm import Session, sessionmaker

from hub.escalation.roster import named_staff, on_duty, role_staff, shift_covers, zone_staff
from hub.storage.models import ShiftOverride, ShiftPattern, StaffRole, StaffUser, Zone

OSLO = ZoneInfo("Europe/Oslo")
T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
MON, TUE, SAT, SUN = 0, 1, 5, 6
DAY = (time(7, 0), time(15, 0))
NIGHT = (time(22, 0), time(7, 0))


def local(day: int, hour: int, minute: int = 0) -> datetime:
    """A wall-clock time in Oslo in the week of Monday 2026-01-05 (``day`` 5 = Monday)."""
    return datetime(2026, 1, day, hour, minute, tzinfo=OSLO)


# --- the pure rule ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("weekday", "shift", "at", "covered"),
    [
        (MON, DAY, local(5, 7), True),
        (MON, DAY, local(5, 14, 59), True),
        (MON, DAY, local(5, 15), False),  # half-open: the evening shift has it
        (MON, DAY, local(5, 6, 59), False),
        (MON, DAY, local(6, 10), False),  # Tuesday
        (MON, NIGHT, local(5, 22), True),
        (MON, NIGHT, local(6, 3), True),  # the Monday night covers Tuesday 03:00
        (MON, NIGHT, local(6, 6, 59), True),
        (MON, NIGHT, local(6, 7), False),
        (MON, NIGHT, local(5, 21, 59), False),
        (MON, NIGHT, local(5, 3), False),  # Monday 03:00 belongs to Sunday's night
        (SUN, NIGHT, local(5, 3), True),  # ... which wraps across the week boundary
        (TUE, NIGHT, local(6, 3), False),  # Tuesday's night starts Tuesday 22:00
        (MON, (time(8, 0), time(8, 0)), local(6, 7, 59), True),  # 24-hour shift
        (MON, (time(8, 0), time(8, 0)), local(6, 8), False),
    ],
)
def test_shift_covers(weekday: int, shift: tuple[time, time], at: datetime, covered: bool) -> None:
    assert shift_covers(weekday, shift[0], shift[1], at) is covered


def test_shift_covers_reads_the_wall_clock_of_a_naive_local_time() -> None:
    assert shift_covers(MON, *NIGHT, datetime(2026, 1, 6, 3, 0))  # noqa: DTZ001


def test_shift_covers_refuses_a_weekday_out_of_range() -> None:
    with pytest.raises(ValueError, match="0 \\(Monday\\) to 6"):
        shift_covers(7, *DAY, local(5, 10))


def _covered_span(weekday: int, start: time, end: time, begin_utc: datetime) -> list[datetime]:
    """UTC instants (every 5 min for 16 h from ``begin_utc``) the shift covers."""
    instants = [begin_utc + timedelta(minutes=5 * i) for i in range(16 * 12)]
    return [i for i in instants if shift_covers(weekday, start, end, i.astimezone(OSLO))]


def test_the_spring_forward_night_is_22_to_07_on_the_wall_and_eight_hours_long() -> None:
    # 2026-03-29: Oslo jumps from 02:00 CET to 03:00 CEST.
    covered = _covered_span(SAT, *NIGHT, datetime(2026, 3, 28, 18, 0, tzinfo=UTC))

    assert covered[0] == datetime(2026, 3, 28, 21, 0, tzinfo=UTC)  # 22:00 CET
    assert covered[-1] == datetime(2026, 3, 29, 4, 55, tzinfo=UTC)  # 06:55 CEST
    assert len(covered) * 5 == 8 * 60  # contiguous: no hole, no double count
    assert covered[-1] - covered[0] == timedelta(hours=8, minutes=-5)


def test_the_fall_back_night_is_ten_hours_and_covers_both_half_past_twos() -> None:
    # 2026-10-25: Oslo falls back from 03:00 CEST to 02:00 CET; 02:30 happens twice.
    covered = _covered_span(SAT, *NIGHT, datetime(2026, 10, 24, 16, 0, tzinfo=UTC))

    assert covered[0] == datetime(2026, 10, 24, 20, 0, tzinfo=UTC)  # 22:00 CEST
    assert covered[-1] == datetime(2026, 10, 25, 5, 55, tzinfo=UTC)  # 06:55 CET
    assert len(covered) * 5 == 10 * 60
    first, second = (datetime(2026, 10, 25, h, 30, tzinfo=UTC) for h in (0, 1))
    assert first.astimezone(OSLO).hour == second.astimezone(OSLO).hour == 2
    assert first in covered and second in covered


def test_the_sunday_day_shift_after_spring_forward_starts_at_local_seven() -> None:
    covered = _covered_span(SUN, *DAY, datetime(2026, 3, 29, 0, 0, tzinfo=UTC))

    assert covered[0] == datetime(2026, 3, 29, 5, 0, tzinfo=UTC)  # 07:00 CEST
    assert len(covered) * 5 == 8 * 60


# --- the database query ----------------------------------------------------------------------


def add_staff(
    session: Session,
    username: str,
    zone: Zone | None,
    role: StaffRole = StaffRole.NURSE,
    *,
    active: bool = True,
    phone: str | None = "+4790000000",
) -> StaffUser:
    user = StaffUser(
        username=username,
        display_name=username.title(),
        role=role,
        password_hash="x",
        phone=phone,
        zone_id=None if zone is None else zone.id,
        active=active,
        created_at=T0,
    )
    session.add(user)
    session.flush()
    return user


def add_shift(
    session: Session, zone: Zone, user: StaffUser, weekday: int, shift: tuple[time, time]
) -> None:
    name = "night" if shift == NIGHT else "day"
    session.add(
        ShiftPattern(
            zone_id=zone.id,
            user_id=user.id,
            name=name,
            weekday=weekday,
            start=shift[0],
            end=shift[1],
        )
    )


def add_override(
    session: Session,
    zone: Zone,
    user: StaffUser,
    starts_at: datetime,
    ends_at: datetime,
    replaces: StaffUser | None = None,
    created_at: datetime = T0,
) -> None:
    session.add(
        ShiftOverride(
            zone_id=zone.id,
            user_id=user.id,
            replaces_user_id=None if replaces is None else replaces.id,
            starts_at=starts_at,
            ends_at=ends_at,
            created_at=created_at,
        )
    )


@pytest.fixture
def roster_db(session_factory: sessionmaker[Session]) -> sessionmaker[Session]:
    """Ørje: Anna days and Bjørn nights on Mondays, Cecilie (left, inactive) days; Dag and Frida
    spare; Mysen: Eva days. A zone-less coordinator and installer serve the municipality."""
    with session_factory() as session, session.begin():
        orje, mysen = Zone(name="Ørje", created_at=T0), Zone(name="Mysen", created_at=T0)
        session.add_all([orje, mysen])
        session.flush()
        anna, bjorn = add_staff(session, "anna", orje), add_staff(session, "bjorn", orje)
        cecilie = add_staff(session, "cecilie", orje, active=False)
        add_staff(session, "dag", orje)
        add_staff(session, "frida", orje, phone=None)
        eva = add_staff(session, "eva", mysen)
        add_staff(session, "gunn", None, StaffRole.COORDINATOR)
        add_staff(session, "hans", orje, StaffRole.COORDINATOR)
        add_staff(session, "ivar", mysen, StaffRole.COORDINATOR)
        add_staff(session, "jon", None, StaffRole.INSTALLER)
        add_shift(session, orje, anna, MON, DAY)
        add_shift(session, orje, bjorn, MON, NIGHT)
        add_shift(session, orje, cecilie, MON, DAY)
        add_shift(session, mysen, eva, MON, DAY)
    return session_factory


def users(factory: sessionmaker[Session], *names: str) -> list[StaffUser]:
    with factory() as session:
        return [session.query(StaffUser).filter_by(username=n).one() for n in names]


def zone(factory: sessionmaker[Session], name: str) -> Zone:
    with factory() as session:
        return session.query(Zone).filter_by(name=name).one()


def duty(factory: sessionmaker[Session], at: datetime, zone_name: str = "Ørje") -> list[str]:
    zone_id = zone(factory, zone_name).id
    with factory() as session:
        return [u.username for u in on_duty(session, zone_id, at.astimezone(UTC), OSLO)]


def test_the_pattern_decides_who_is_on_duty_and_an_inactive_user_never_is(
    roster_db: sessionmaker[Session],
) -> None:
    assert duty(roster_db, local(5, 10)) == ["anna"]  # Cecilie left; Eva is in Mysen
    assert duty(roster_db, local(5, 10), "Mysen") == ["eva"]
    assert duty(roster_db, local(6, 3)) == ["bjorn"]  # Monday's night, on Tuesday
    assert duty(roster_db, local(5, 16)) == []  # nobody on Monday evening


def test_a_swap_puts_the_other_nurse_on_duty_for_exactly_the_shift(
    roster_db: sessionmaker[Session],
) -> None:
    anna, dag = users(roster_db, "anna", "dag")
    starts, ends = local(5, 7), local(5, 15)
    with roster_db() as session, session.begin():
        add_override(session, zone(roster_db, "Ørje"), dag, starts, ends, replaces=anna)

    assert duty(roster_db, starts) == ["dag"]
    assert duty(roster_db, local(5, 14, 59)) == ["dag"]
    assert duty(roster_db, ends) == []  # ends_at is exclusive
    assert duty(roster_db, local(12, 10)) == ["anna"]  # next Monday: the pattern again


def test_a_sick_day_replacement_can_itself_be_replaced(roster_db: sessionmaker[Session]) -> None:
    bjorn, dag, frida = users(roster_db, "bjorn", "dag", "frida")
    orje = zone(roster_db, "Ørje")
    night = (local(5, 22), local(6, 7))
    with roster_db() as session, session.begin():
        # Frida's cover for Dag was entered after Dag's cover for Bjørn: the later one wins.
        add_override(session, orje, frida, *night, replaces=dag, created_at=T0 + timedelta(hours=1))
        add_override(session, orje, dag, *night, replaces=bjorn)

    assert duty(roster_db, local(6, 3)) == ["frida"]


def test_an_extra_hand_joins_and_the_order_is_by_username(roster_db: sessionmaker[Session]) -> None:
    (dag,) = users(roster_db, "dag")
    with roster_db() as session, session.begin():
        add_override(session, zone(roster_db, "Ørje"), dag, local(5, 9), local(5, 12))

    assert duty(roster_db, local(5, 10)) == ["anna", "dag"]
    assert duty(roster_db, local(5, 10), "Mysen") == ["eva"]  # the override is Ørje's


def test_an_inactive_user_is_not_on_duty_even_by_override(roster_db: sessionmaker[Session]) -> None:
    anna, cecilie = users(roster_db, "anna", "cecilie")
    with roster_db() as session, session.begin():
        add_override(session, zone(roster_db, "Ørje"), cecilie, local(5, 7), local(5, 15), anna)

    assert duty(roster_db, local(5, 10)) == []


def test_on_duty_refuses_a_naive_time(roster_db: sessionmaker[Session]) -> None:
    with roster_db() as session, pytest.raises(ValueError, match="naive"):
        on_duty(session, 1, datetime(2026, 1, 5, 10, 0), OSLO)  # noqa: DTZ001


def test_zone_staff_role_staff_and_named_staff(roster_db: sessionmaker[Session]) -> None:
    orje = zone(roster_db, "Ørje")
    anna, cecilie, eva = users(roster_db, "anna", "cecilie", "eva")
    with roster_db() as session:
        everyone = [u.username for u in zone_staff(session, orje.id)]
        nurses = [u.username for u in zone_staff(session, orje.id, {StaffRole.NURSE})]
        coordinators = [u.username for u in role_staff(session, orje.id, StaffRole.COORDINATOR)]
        named = [u.username for u in named_staff(session, [eva.id, cecilie.id, anna.id, eva.id])]

    assert everyone == ["anna", "bjorn", "dag", "frida", "hans"]
    assert nurses == ["anna", "bjorn", "dag", "frida"]
    assert coordinators == ["gunn", "hans"]  # Ørje's and the municipality-wide one, not Mysen's
    assert named == ["eva", "anna"]  # in the order given, once, without the inactive account
