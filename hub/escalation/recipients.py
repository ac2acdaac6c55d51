"""Turning a policy step into concrete people: staff by roster, relatives by their own wishes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time
from typing import Literal, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.escalation import roster
from hub.escalation.policy import Step, Target
from hub.storage.models import Relative, RelativeRole, Severity, StaffUser

RecipientKind = Literal["staff", "relative"]


@dataclass(frozen=True)
class Recipient:
    """One person a step reaches. ``acting``: may take the alarm (staff and acting relatives).

    ``phone`` is None when there is no number: staff without one still see the portal; the
    engine decides per channel whom it can reach.
    """

    kind: RecipientKind
    id: int
    name: str
    phone: str | None
    language: str
    acting: bool

    @property
    def key(self) -> tuple[RecipientKind, int]:
        return (self.kind, self.id)


class RelativePrefs(Protocol):
    """The fields of a relative that decide whether they want an SMS (``Relative`` has them)."""

    @property
    def role(self) -> RelativeRole: ...
    @property
    def alarm_types(self) -> list[str] | None: ...
    @property
    def quiet_start(self) -> time | None: ...
    @property
    def quiet_end(self) -> time | None: ...
    @property
    def sms_opt_out(self) -> bool: ...


def in_quiet_hours(quiet_start: time | None, quiet_end: time | None, at_local: datetime) -> bool:
    """Is the local wall-clock time of ``at_local`` inside ``[quiet_start, quiet_end)``?

    ``quiet_end <= quiet_start`` wraps midnight (22:00–07:00); missing bounds or equal bounds
    mean no quiet hours.
    """
    if quiet_start is None or quiet_end is None:
        return False
    start = quiet_start.replace(tzinfo=None)
    end = quiet_end.replace(tzinfo=None)
    if start == end:
        return False
    clock = at_local.time().replace(tzinfo=None, fold=0)
    if start < end:
        return start <= clock < end
    return clock >= start or clock < end


def relative_wants(
    relative: RelativePrefs, alarm_type: str, severity: Severity, at_local: datetime
) -> bool:
    """Should this relative get an SMS about an alarm of ``alarm_type`` at ``at_local``?

    Opted out (STOP) → never. A list of alarm types that lacks this one → no (an empty list
    wants nothing; None wants all). Inside quiet hours → no, except a red alarm to an acting
    relative, which always goes through.
    """
    if relative.sms_opt_out:
        return False
    if relative.alarm_types is not None and alarm_type not in relative.alarm_types:
        return False
    if in_quiet_hours(relative.quiet_start, relative.quiet_end, at_local):
        return severity == Severity.RED and relative.role == RelativeRole.ACTING
    return True


def resolve_step(
    session: Session,
    step: Step,
    *,
    zone_id: int,
    resident_id: int,
    alarm_type: str,
    severity: Severity,
    at: datetime,
    tz: ZoneInfo,
) -> list[Recipient]:
    """The people a step reaches now: its targets in order, each person once (first place wins).

    Staff come from the roster (inactive accounts never; those without a phone are kept). For
    ``acting_relatives``, the resident's acting relatives in priority order who want this alarm
    now (``relative_wants``). Reads only; runs inside the caller's transaction.
    """
    if at.tzinfo is None:
        raise ValueError("naive datetime: resolve_step needs an aware instant")
    at_local = at.astimezone(tz)
    seen: set[tuple[RecipientKind, int]] = set()
    result: list[Recipient] = []
    for target in step.targets:
        for recipient in _target_recipients(
            session, target, zone_id, resident_id, alarm_type, severity, at, at_local, tz
        ):
            if recipient.key not in seen:
                seen.add(recipient.key)
                result.append(recipient)
    return result


def informed_relatives(
    session: Session,
    resident_id: int,
    alarm_type: str,
    severity: Severity,
    at: datetime,
    tz: ZoneInfo,
) -> list[Recipient]:
    """The resident's informed relatives who want this alarm now, in priority order.

    They get one SMS and carry no responsibility (``acting`` is False).
    """
    if at.tzinfo is None:
        raise ValueError("naive datetime: informed_relatives needs an aware instant")
    at_local = at.astimezone(tz)
    return [
        _relative(r)
        for r in _relatives(session, resident_id, RelativeRole.INFORMED)
        if relative_wants(r, alarm_type, severity, at_local)
    ]


def _target_recipients(
    session: Session,
    target: Target,
    zone_id: int,
    resident_id: int,
    alarm_type: str,
    severity: Severity,
    at: datetime,
    at_local: datetime,
    tz: ZoneInfo,
) -> list[Recipient]:
    staff: list[StaffUser]
    if target.kind == "acting_relatives":
        return [
            _relative(r)
            for r in _relatives(session, resident_id, RelativeRole.ACTING)
            if relative_wants(r, alarm_type, severity, at_local)
        ]
    if target.kind == "on_duty":
        staff = roster.on_duty(session, zone_id, at, tz)
    elif target.kind == "zone_staff":
        staff = roster.zone_staff(session, zone_id, None if target.role is None else {target.role})
    elif target.kind == "role":
        staff = [] if target.role is None else roster.role_staff(session, zone_id, target.role)
    else:
        staff = roster.named_staff(session, target.user_ids)
    return [_staff(u) for u in staff]


def _relatives(session: Session, resident_id: int, role: RelativeRole) -> list[Relative]:
    query = (
        select(Relative)
        .where(Relative.resident_id == resident_id, Relative.role == role)
        .order_by(Relative.priority, Relative.id)
    )
    return list(session.scalars(query).all())


def _staff(user: StaffUser) -> Recipient:
    return Recipient(
        kind="staff",
        id=user.id,
        name=user.display_name,
        phone=user.phone or None,
        language=user.language,
        acting=True,
    )


def _relative(relative: Relative) -> Recipient:
    return Recipient(
        kind="relative",
        id=relative.id,
        name=relative.name,
        phone=relative.phone or None,
        language=relative.language,
        acting=relative.role == RelativeRole.ACTING,
    )
