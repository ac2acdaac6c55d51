"""Turning a policy step into concrete people: staff by roster, relatives by their own wishes."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, time
from typing import Literal, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.escalation import roster
from hub.escalation.policy import Step, Target
from hub.storage.bulk import one_of
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


class Directory:
    """Who is who at one instant, each lookup made once: a step tick advancing hundreds of
    alarms asks the roster once per zone and target, and loads relatives once per resident.

    Reads only, inside the caller's transaction; meant to live for one transaction.
    """

    def __init__(self, session: Session, at: datetime, tz: ZoneInfo) -> None:
        if at.tzinfo is None:
            raise ValueError("naive datetime: a directory needs an aware instant")
        self.session = session
        self.at = at
        self.tz = tz
        self.at_local = at.astimezone(tz)
        self._staff: dict[tuple[object, ...], list[Recipient]] = {}
        self._relatives: dict[tuple[int, RelativeRole], list[Relative]] = {}

    def staff(self, target: Target, zone_id: int) -> list[Recipient]:
        """The staff a (non-relative) target reaches in ``zone_id`` now."""
        key = (target.kind, target.role, tuple(target.user_ids), zone_id)
        found = self._staff.get(key)
        if found is None:
            found = [_staff(u) for u in self._staff_users(target, zone_id)]
            self._staff[key] = found
        return found

    def _staff_users(self, target: Target, zone_id: int) -> list[StaffUser]:
        session = self.session
        if target.kind == "on_duty":
            return roster.on_duty(session, zone_id, self.at, self.tz)
        if target.kind == "zone_staff":
            roles = None if target.role is None else {target.role}
            return roster.zone_staff(session, zone_id, roles)
        if target.kind == "role":
            return [] if target.role is None else roster.role_staff(session, zone_id, target.role)
        return roster.named_staff(session, target.user_ids)

    def preload_relatives(self, resident_ids: Iterable[int]) -> None:
        """Load the relatives of all these residents in one query (both roles)."""
        wanted = sorted({r for r in resident_ids} - {r for r, _ in self._relatives})
        if not wanted:
            return
        for resident_id in wanted:
            for role in RelativeRole:
                self._relatives[(resident_id, role)] = []
        rows = self.session.scalars(
            select(Relative)
            .where(one_of(self.session, Relative.resident_id, wanted))
            .order_by(Relative.resident_id, Relative.priority, Relative.id)
        ).all()
        for relative in rows:
            self._relatives[(relative.resident_id, RelativeRole(relative.role))].append(relative)

    def relatives(self, resident_id: int, role: RelativeRole) -> list[Relative]:
        """The resident's relatives of ``role``, by priority."""
        key = (resident_id, role)
        if key not in self._relatives:
            self._relatives[key] = _relatives(self.session, resident_id, role)
        return self._relatives[key]


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
    directory: Directory | None = None,
) -> list[Recipient]:
    """The people a step reaches now: its targets in order, each person once (first place wins).

    Staff come from the roster (inactive accounts never; those without a phone are kept). For
    ``acting_relatives``, the resident's acting relatives in priority order who want this alarm
    now (``relative_wants``). Reads only; runs inside the caller's transaction. A ``directory``
    for the same instant saves the lookups when many alarms are resolved together.
    """
    if at.tzinfo is None:
        raise ValueError("naive datetime: resolve_step needs an aware instant")
    people = directory if directory is not None else Directory(session, at, tz)
    seen: set[tuple[RecipientKind, int]] = set()
    result: list[Recipient] = []
    for target in step.targets:
        if target.kind == "acting_relatives":
            found = [
                _relative(r)
                for r in people.relatives(resident_id, RelativeRole.ACTING)
                if relative_wants(r, alarm_type, severity, people.at_local)
            ]
        else:
            found = people.staff(target, zone_id)
        for recipient in found:
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
    directory: Directory | None = None,
) -> list[Recipient]:
    """The resident's informed relatives who want this alarm now, in priority order.

    They get one SMS and carry no responsibility (``acting`` is False).
    """
    if at.tzinfo is None:
        raise ValueError("naive datetime: informed_relatives needs an aware instant")
    people = directory if directory is not None else Directory(session, at, tz)
    return [
        _relative(r)
        for r in people.relatives(resident_id, RelativeRole.INFORMED)
        if relative_wants(r, alarm_type, severity, people.at_local)
    ]


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
