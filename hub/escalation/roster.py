"""Who is on duty: weekly shift patterns per zone, one-off overrides, and the zone's staff."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, time
from zoneinfo import ZoneInfo

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from hub.storage.models import ShiftOverride, ShiftPattern, StaffRole, StaffUser


def shift_covers(pattern_weekday: int, start: time, end: time, at_local: datetime) -> bool:
    """Does a weekly shift starting on ``pattern_weekday`` (0 = Monday) cover ``at_local``?

    The shift is the half-open local wall-clock interval ``[start, end)``; ``end <= start``
    means it ends on the next morning (a Monday 22:00–07:00 night covers Tuesday 03:00), and
    ``end == start`` is a 24-hour shift. ``at_local`` is read as a wall clock in the
    municipality's zone (aware in that zone, or naive local), so a shift is always "22:00 to
    07:00" whatever the UTC offset: the spring-forward night is an hour shorter, the fall-back
    night an hour longer, and both 02:30s of a fall-back night are covered.
    """
    if not 0 <= pattern_weekday <= 6:
        raise ValueError(f"weekday must be 0 (Monday) to 6 (Sunday), not {pattern_weekday}")
    clock = at_local.time().replace(tzinfo=None, fold=0)
    start = start.replace(tzinfo=None)
    end = end.replace(tzinfo=None)
    weekday = at_local.weekday()
    if start < end:
        return weekday == pattern_weekday and start <= clock < end
    # Wraps past midnight: the evening part on the pattern's day, the morning part on the next.
    if weekday == pattern_weekday and clock >= start:
        return True
    return (weekday - 1) % 7 == pattern_weekday and clock < end


def on_duty(session: Session, zone_id: int, at: datetime, tz: ZoneInfo) -> list[StaffUser]:
    """Active staff on duty in ``zone_id`` at the instant ``at``, ordered by username.

    The weekly patterns of the zone that cover ``at`` (local time in ``tz``), then every
    override of the zone active at ``at`` (``starts_at <= at < ends_at``), applied oldest first:
    it takes ``replaces_user_id`` off duty (when set) and puts ``user_id`` on duty for its
    whole period. Applying them in order makes a chain work (C covers for sick B, then D covers
    for C). Inactive accounts are never on duty.
    """
    if at.tzinfo is None:
        raise ValueError("naive datetime: on_duty needs an aware instant")
    at_local = at.astimezone(tz)
    today = at_local.weekday()
    patterns = session.scalars(
        select(ShiftPattern).where(
            ShiftPattern.zone_id == zone_id,
            ShiftPattern.weekday.in_([today, (today - 1) % 7]),
        )
    ).all()
    user_ids: set[int] = {
        p.user_id for p in patterns if shift_covers(p.weekday, p.start, p.end, at_local)
    }
    overrides = session.scalars(
        select(ShiftOverride)
        .where(
            ShiftOverride.zone_id == zone_id,
            ShiftOverride.starts_at <= at,
            ShiftOverride.ends_at > at,
        )
        .order_by(ShiftOverride.created_at, ShiftOverride.id)
    ).all()
    for override in overrides:
        if override.replaces_user_id is not None:
            user_ids.discard(override.replaces_user_id)
        user_ids.add(override.user_id)
    return _active_users(session, user_ids)


def zone_staff(
    session: Session, zone_id: int, roles: set[StaffRole] | None = None
) -> list[StaffUser]:
    """Active staff whose home zone is ``zone_id`` (optionally only these roles), by username."""
    query = select(StaffUser).where(StaffUser.active.is_(True), StaffUser.zone_id == zone_id)
    if roles is not None:
        query = query.where(StaffUser.role.in_(sorted(roles)))
    return list(session.scalars(query.order_by(StaffUser.username)).all())


def role_staff(session: Session, zone_id: int, role: StaffRole) -> list[StaffUser]:
    """Active staff with ``role`` in ``zone_id`` or with no zone (municipality-wide), by username.

    A coordinator or an installer team often serves every zone; they have no ``zone_id``.
    """
    query = select(StaffUser).where(
        StaffUser.active.is_(True),
        StaffUser.role == role,
        or_(StaffUser.zone_id == zone_id, StaffUser.zone_id.is_(None)),
    )
    return list(session.scalars(query.order_by(StaffUser.username)).all())


def named_staff(session: Session, user_ids: Iterable[int]) -> list[StaffUser]:
    """The active accounts among ``user_ids``, in the order given (unknown, inactive: dropped)."""
    wanted = list(dict.fromkeys(user_ids))
    if not wanted:
        return []
    found = {
        u.id: u
        for u in session.scalars(
            select(StaffUser).where(StaffUser.id.in_(wanted), StaffUser.active.is_(True))
        )
    }
    return [found[i] for i in wanted if i in found]


def _active_users(session: Session, user_ids: set[int]) -> list[StaffUser]:
    if not user_ids:
        return []
    query = (
        select(StaffUser)
        .where(StaffUser.id.in_(sorted(user_ids)), StaffUser.active.is_(True))
        .order_by(StaffUser.username)
    )
    return list(session.scalars(query).all())
