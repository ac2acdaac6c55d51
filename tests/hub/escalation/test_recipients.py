"""From a policy step to people: quiet hours, relatives' wishes, order and de-duplication."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from hub.escalation.policy import Step, Target, default_policies
from hub.escalation.recipients import (
    Recipient,
    in_quiet_hours,
    informed_relatives,
    relative_wants,
    resolve_step,
)
from hub.storage.models import (
    Relative,
    RelativeRole,
    Resident,
    Severity,
    ShiftPattern,
    StaffRole,
    StaffUser,
)
from tests.factories import add_home

OSLO = ZoneInfo("Europe/Oslo")
T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
NIGHT_QUIET = (time(22, 0), time(7, 0))


def at(hour: int, minute: int = 0) -> datetime:
    """Monday 2026-01-05 at a local Oslo time."""
    return datetime(2026, 1, 5, hour, minute, tzinfo=OSLO)


# --- pure rules --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("quiet", "when", "quiet_now"),
    [
        (NIGHT_QUIET, at(22), True),
        (NIGHT_QUIET, at(3), True),
        (NIGHT_QUIET, at(6, 59), True),
        (NIGHT_QUIET, at(7), False),
        (NIGHT_QUIET, at(12), False),
        (NIGHT_QUIET, at(21, 59), False),
        ((time(13, 0), time(15, 0)), at(14), True),  # an afternoon nap, no wrap
        ((time(13, 0), time(15, 0)), at(15), False),
        ((time(13, 0), time(13, 0)), at(13), False),  # equal bounds: no quiet hours
        ((None, time(7, 0)), at(3), False),
        ((time(22, 0), None), at(23), False),
    ],
)
def test_quiet_hours(
    quiet: tuple[time | None, time | None], when: datetime, quiet_now: bool
) -> None:
    assert in_quiet_hours(quiet[0], quiet[1], when) is quiet_now


@dataclass
class Prefs:
    role: RelativeRole = RelativeRole.ACTING
    alarm_types: list[str] | None = None
    quiet_start: time | None = NIGHT_QUIET[0]
    quiet_end: time | None = NIGHT_QUIET[1]
    sms_opt_out: bool = False


@pytest.mark.parametrize(
    ("prefs", "alarm_type", "severity", "when", "wanted"),
    [
        (Prefs(), "fall", Severity.RED, at(12), True),
        (Prefs(), "fall", Severity.RED, at(3), True),  # red goes through to acting
        (Prefs(), "door_night", Severity.YELLOW, at(3), False),  # yellow waits for morning
        (Prefs(role=RelativeRole.INFORMED), "fall", Severity.RED, at(3), False),
        (Prefs(role=RelativeRole.INFORMED), "fall", Severity.RED, at(12), True),
        (Prefs(sms_opt_out=True), "fall", Severity.RED, at(12), False),  # STOP means never
        (Prefs(alarm_types=["fall", "button"]), "fall", Severity.RED, at(12), True),
        (Prefs(alarm_types=["fall", "button"]), "inactivity", Severity.YELLOW, at(12), False),
        (Prefs(alarm_types=["door_night"]), "fall", Severity.RED, at(12), False),
        (Prefs(alarm_types=[]), "fall", Severity.RED, at(12), False),  # chose nothing
        (Prefs(quiet_start=None, quiet_end=None), "low_battery", Severity.GREEN, at(3), True),
    ],
)
def test_relative_wants(
    prefs: Prefs, alarm_type: str, severity: Severity, when: datetime, wanted: bool
) -> None:
    assert relative_wants(prefs, alarm_type, severity, when) is wanted


# --- resolving steps against the database ------------------------------------------------------


@dataclass(frozen=True)
class Home:
    zone_id: int
    resident_id: int
    staff: dict[str, int]
    relatives: dict[str, int]


def _staff(
    session: Session, username: str, role: StaffRole, zone_id: int | None, phone: str | None
) -> int:
    user = StaffUser(
        username=username,
        display_name=username.title(),
        role=role,
        password_hash="x",
        phone=phone,
        zone_id=zone_id,
        language="en" if username == "bjorn" else "nb",
        created_at=T0,
    )
    session.add(user)
    session.flush()
    return user.id


def _relative(
    session: Session,
    resident_id: int,
    name: str,
    priority: int,
    role: RelativeRole,
    **prefs: object,
) -> int:
    relative = Relative(
        resident_id=resident_id,
        name=name,
        phone=f"+47{priority:08d}",
        priority=priority,
        role=role,
        created_at=T0,
        **prefs,
    )
    session.add(relative)
    session.flush()
    return relative.id


@pytest.fixture
def home(session_factory: sessionmaker[Session]) -> tuple[sessionmaker[Session], Home]:
    """Kari in Ørje. Anna (nurse, no phone) on the Monday day shift; Bjørn, nurse; Hans,
    coordinator. Relatives: Ola (acting, 1, quiet at night), Per (acting, 2, falls only),
    Siri (acting, 3, STOP), Liv (informed, quiet at night), Tor (informed, door only)."""
    add_home(session_factory)
    with session_factory() as session, session.begin():
        resident = session.scalars(select(Resident)).one()
        zone_id = resident.zone_id
        staff = {
            "anna": _staff(session, "anna", StaffRole.NURSE, zone_id, None),
            "bjorn": _staff(session, "bjorn", StaffRole.NURSE, zone_id, "+4791111111"),
            "hans": _staff(session, "hans", StaffRole.COORDINATOR, zone_id, "+4792222222"),
        }
        session.add(
            ShiftPattern(
                zone_id=zone_id,
                user_id=staff["anna"],
                name="day",
                weekday=0,
                start=time(7, 0),
                end=time(15, 0),
            )
        )
        rid = resident.id
        quiet = {"quiet_start": NIGHT_QUIET[0], "quiet_end": NIGHT_QUIET[1]}
        # Inserted out of priority order on purpose.
        relatives = {
            "siri": _relative(session, rid, "Siri", 3, RelativeRole.ACTING, sms_opt_out=True),
            "per": _relative(session, rid, "Per", 2, RelativeRole.ACTING, alarm_types=["fall"]),
            "ola": _relative(session, rid, "Ola", 1, RelativeRole.ACTING, **quiet),
            "liv": _relative(session, rid, "Liv", 1, RelativeRole.INFORMED, **quiet),
            "tor": _relative(session, rid, "Tor", 2, RelativeRole.INFORMED, alarm_types=["door"]),
        }
    return session_factory, Home(zone_id, rid, staff, relatives)


def resolve(
    factory: sessionmaker[Session],
    h: Home,
    step: Step,
    when: datetime,
    alarm_type: str = "fall",
    severity: Severity = Severity.RED,
) -> list[Recipient]:
    with factory() as session:
        return resolve_step(
            session,
            step,
            zone_id=h.zone_id,
            resident_id=h.resident_id,
            alarm_type=alarm_type,
            severity=severity,
            at=when.astimezone(UTC),
            tz=OSLO,
        )


def names(recipients: list[Recipient]) -> list[str]:
    return [r.name for r in recipients]


def test_targets_come_in_order_and_each_person_once(
    home: tuple[sessionmaker[Session], Home],
) -> None:
    factory, h = home
    step = Step(
        wait_s=60,
        targets=[
            Target(kind="on_duty"),
            Target(kind="users", user_ids=[h.staff["hans"], h.staff["anna"]]),
            Target(kind="zone_staff", role=StaffRole.NURSE),
            Target(kind="acting_relatives"),
        ],
        channels=["portal", "sms"],
    )

    recipients = resolve(factory, h, step, at(10))

    assert names(recipients) == ["Anna", "Hans", "Bjorn", "Ola", "Per"]
    assert [r.kind for r in recipients] == ["staff"] * 3 + ["relative"] * 2
    assert all(r.acting for r in recipients)


def test_staff_without_a_phone_is_still_a_recipient_for_the_portal(
    home: tuple[sessionmaker[Session], Home],
) -> None:
    factory, h = home
    first = default_policies()[Severity.RED].steps[0]

    (anna,) = resolve(factory, h, first, at(10))

    assert anna == Recipient("staff", h.staff["anna"], "Anna", None, "nb", True)


def test_the_red_second_step_reaches_the_zones_nurses_and_the_coordinator(
    home: tuple[sessionmaker[Session], Home],
) -> None:
    factory, h = home
    second = default_policies()[Severity.RED].steps[1]

    recipients = resolve(factory, h, second, at(10))

    assert names(recipients) == ["Anna", "Bjorn", "Hans"]
    assert recipients[1].phone == "+4791111111" and recipients[1].language == "en"


def test_a_red_fall_at_night_reaches_acting_relatives_in_priority_order_through_quiet_hours(
    home: tuple[sessionmaker[Session], Home],
) -> None:
    factory, h = home
    relatives = default_policies()[Severity.RED].steps[2]

    recipients = resolve(factory, h, relatives, at(3))

    # Ola is in quiet hours but the alarm is red; Per wants falls; Siri said STOP.
    assert names(recipients) == ["Ola", "Per"]
    assert recipients[0] == Recipient(
        "relative", h.relatives["ola"], "Ola", "+4700000001", "nb", True
    )


def test_a_yellow_alarm_at_night_respects_quiet_hours_and_alarm_types(
    home: tuple[sessionmaker[Session], Home],
) -> None:
    factory, h = home
    relatives = default_policies()[Severity.YELLOW].steps[2]

    assert resolve(factory, h, relatives, at(3), "door_night", Severity.YELLOW) == []
    assert names(resolve(factory, h, relatives, at(9), "door_night", Severity.YELLOW)) == ["Ola"]


def test_informed_relatives_get_no_responsibility_and_no_red_exception(
    home: tuple[sessionmaker[Session], Home],
) -> None:
    factory, h = home

    def informed(when: datetime, alarm_type: str) -> list[Recipient]:
        with factory() as session:
            return informed_relatives(
                session, h.resident_id, alarm_type, Severity.RED, when.astimezone(UTC), OSLO
            )

    by_day = informed(at(12), "fall")
    assert names(by_day) == ["Liv"]  # Tor only wants door alarms; acting relatives are not here
    assert not by_day[0].acting and by_day[0].kind == "relative"
    assert informed(at(3), "fall") == []  # Liv's quiet hours hold even for red
    assert names(informed(at(12), "door")) == ["Liv", "Tor"]


def test_nobody_on_duty_resolves_to_nobody(home: tuple[sessionmaker[Session], Home]) -> None:
    factory, h = home
    first = default_policies()[Severity.RED].steps[0]

    assert resolve(factory, h, first, at(20)) == []
