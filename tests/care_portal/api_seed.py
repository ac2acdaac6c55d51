"""Staff accounts and alarms on top of the portal's care story, for the API and alarm tests."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from hub.alarms import service
from hub.passwords import hash_password
from hub.storage.models import AlarmStatus, Resident, Severity, StaffRole, StaffUser
from tests.care_portal.seed import FALL_SENSOR, HOME, QUIET_HOME, T0

PASSWORD = "correct horse battery staple"
# username → role; "retired" is a deactivated nurse.
USERS = {
    "nurse": StaffRole.NURSE,
    "coordinator": StaffRole.COORDINATOR,
    "installer": StaffRole.INSTALLER,
    "retired": StaffRole.NURSE,
}


def add_staff(factory: sessionmaker[Session]) -> None:
    """One user of each role (password ``PASSWORD``), and a deactivated one."""
    password_hash = hash_password(PASSWORD)
    with factory() as session, session.begin():
        for username, role in USERS.items():
            session.add(
                StaffUser(
                    username=username,
                    display_name=username.title(),
                    role=role,
                    password_hash=password_hash,
                    active=username != "retired",
                    created_at=T0,
                )
            )


def resident_ids(factory: sessionmaker[Session]) -> tuple[int, int]:
    """(Kari's id, Ola's id)."""
    with factory() as session:
        kari = session.scalars(select(Resident.id).where(Resident.home_id == HOME)).one()
        ola = session.scalars(select(Resident.id).where(Resident.home_id == QUIET_HOME)).one()
    return kari, ola


def add_alarms(factory: sessionmaker[Session]) -> dict[str, int]:
    """Kari fell 6 min before T0 (red, open); her door alarmed 40 min before (yellow, open);
    Ola has an old green low-battery alarm, resolved. Returns their ids by name."""
    kari, ola = resident_ids(factory)
    with factory() as session, session.begin():
        door, _ = service.open_or_join(
            session,
            now=T0 - timedelta(minutes=40),
            resident_id=kari,
            home_id=HOME,
            type="door_night",
            severity=Severity.YELLOW,
            summary="door open since 12:20, not back within 10 min",
        )
        fall, _ = service.open_or_join(
            session,
            now=T0 - timedelta(minutes=6),
            resident_id=kari,
            home_id=HOME,
            type="fall",
            severity=Severity.RED,
            summary="fall detected",
            device_id=FALL_SENSOR,
        )
        battery, _ = service.open_or_join(
            session,
            now=T0 - timedelta(days=2),
            resident_id=ola,
            home_id=QUIET_HOME,
            type="low_battery",
            severity=Severity.GREEN,
            summary="battery 12 %",
        )
        service.transition(
            session,
            battery.id,
            to=AlarmStatus.RESOLVED,
            actor="user:coordinator",
            now=T0 - timedelta(days=1),
            outcome="technical",
        )
    return {"fall": fall.id, "door": door.id, "battery": battery.id}
