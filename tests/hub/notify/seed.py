"""A care story for the reply tests: Kari and Ola, two nurses, a coordinator, Kari's relatives."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from hub.alarms import service
from hub.storage.models import (
    Alarm,
    AlarmEscalation,
    AlarmStatus,
    Home,
    Notification,
    Relative,
    RelativeRole,
    Resident,
    Severity,
    StaffRole,
    StaffUser,
    Zone,
)

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
KARI = "Kari N., Storgata"
OLA = "Ola H., Torget"
# Numbers as the provider sends them (E.164); some are stored differently (see ``seed``).
NURSE_PHONE = "+4791234567"
NURSE_NAME = "Nina Nilsen"
OTHER_NURSE_PHONE = "+4791112222"
OTHER_NURSE_NAME = "Ole Olsen"
COORDINATOR_PHONE = "+4790001111"
COORDINATOR_NAME = "Cora Berg"
ACTING_PHONE = "+4798765432"
ACTING_NAME = "Per Nordmann"
INFORMED_PHONE = "+4797777777"
INFORMED_NAME = "Anne Nordmann"
ENGLISH_NURSE_PHONE = "+4793334444"
UNKNOWN_PHONE = "+4799999999"


@dataclass(frozen=True)
class People:
    kari: int
    ola: int
    nurse: int
    other_nurse: int
    coordinator: int
    english_nurse: int
    acting: int
    informed: int


def seed(factory: sessionmaker[Session]) -> People:
    """Kari (Ørje) and Ola; staff and Kari's relatives, some numbers stored with spaces or
    without the country code, as people type them in."""
    with factory() as session, session.begin():
        zone = Zone(name="Ørje", created_at=T0)
        session.add(zone)
        session.flush()
        kari_home = Home(id="h-kari", zone_id=zone.id, address="Storgata 1", created_at=T0)
        ola_home = Home(id="h-ola", zone_id=zone.id, address="Torget 2", created_at=T0)
        kari = Resident(
            home=kari_home, zone_id=zone.id, label=KARI, full_name="Kari N", created_at=T0
        )
        ola = Resident(home=ola_home, zone_id=zone.id, label=OLA, full_name="Ola H", created_at=T0)
        nurse = _staff("nina", NURSE_NAME, StaffRole.NURSE, "+47 912 34 567")
        other = _staff("ole", OTHER_NURSE_NAME, StaffRole.NURSE, OTHER_NURSE_PHONE)
        coordinator = _staff("cora", COORDINATOR_NAME, StaffRole.COORDINATOR, COORDINATOR_PHONE)
        english = _staff("emma", "Emma Smith", StaffRole.NURSE, ENGLISH_NURSE_PHONE, "en")
        # A deactivated account still holding a number must never take anything.
        retired = _staff("gone", "Gone Away", StaffRole.NURSE, UNKNOWN_PHONE)
        retired.active = False
        acting = Relative(
            resident=kari,
            name=ACTING_NAME,
            phone="98765432",
            priority=1,
            role=RelativeRole.ACTING,
            created_at=T0,
        )
        informed = Relative(
            resident=kari,
            name=INFORMED_NAME,
            phone=INFORMED_PHONE,
            priority=2,
            role=RelativeRole.INFORMED,
            created_at=T0,
        )
        session.add_all(
            [kari_home, ola_home, kari, ola, nurse, other, coordinator, english, retired]
        )
        session.add_all([acting, informed])
        session.flush()
        return People(
            kari=kari.id,
            ola=ola.id,
            nurse=nurse.id,
            other_nurse=other.id,
            coordinator=coordinator.id,
            english_nurse=english.id,
            acting=acting.id,
            informed=informed.id,
        )


def _staff(
    username: str, name: str, role: StaffRole, phone: str, language: str = "nb"
) -> StaffUser:
    return StaffUser(
        username=username,
        display_name=name,
        role=role,
        password_hash="x",
        phone=phone,
        language=language,
        active=True,
        created_at=T0,
    )


def open_alarm(
    session: Session,
    resident_id: int,
    *,
    code: str,
    alarm_type: str = "fall",
    minutes_ago: int = 5,
) -> Alarm:
    """An alarm the escalation has notified people of (status notified, escalation active)."""
    resident = session.get(Resident, resident_id)
    assert resident is not None
    at = T0 - timedelta(minutes=minutes_ago)
    alarm, _ = service.open_or_join(
        session,
        now=at,
        resident_id=resident_id,
        home_id=resident.home_id,
        type=alarm_type,
        severity=Severity.RED,
        summary="test",
    )
    alarm.short_code = code
    service.transition(session, alarm.id, to=AlarmStatus.NOTIFIED, actor="hub:escalation", now=at)
    session.add(
        AlarmEscalation(
            alarm_id=alarm.id,
            policy_snapshot={},
            step_index=1,
            round=1,
            state="active",
            next_due_at=T0 + timedelta(minutes=2),
            updated_at=at,
        )
    )
    session.flush()
    return alarm


def notify(
    session: Session,
    alarm: Alarm,
    kind: str,
    recipient_id: int,
    phone: str,
    *,
    channel: str = "sms",
    purpose: str = "alarm",
    status: str = "delivered",
    sid: str | None = None,
) -> Notification:
    """A notification the outbox has (already) sent to one person about ``alarm``."""
    note = Notification(
        alarm_id=alarm.id,
        channel=channel,
        purpose=purpose,
        recipient_kind=kind,
        recipient_id=recipient_id,
        to_number=phone,
        body="(text)",
        status=status,
        provider_sid=sid,
        attempts=1,
        created_at=alarm.opened_at,
        updated_at=alarm.opened_at,
    )
    session.add(note)
    session.flush()
    return note
