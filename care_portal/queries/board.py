"""View models of the alarm board and the alarm page (with its timeline), read from the database."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from hub.alarms.lifecycle import (
    ACTIVE_STATUSES,
    UNTAKEN_RESOLVE_OUTCOMES,
    UNTAKEN_STATUSES,
    Outcome,
)
from hub.storage.models import (
    Alarm,
    AlarmStatus,
    AlarmTimelineEntry,
    AuditEntry,
    Device,
    Notification,
    Relative,
    Resident,
    Severity,
    StaffUser,
)

# Most urgent first: red, then yellow, then green (the VKP code list).
_SEVERITY_RANK = case(
    {Severity.RED.value: 0, Severity.YELLOW.value: 1, Severity.GREEN.value: 2},
    value=Alarm.severity,
    else_=3,
)
BOARD_LIMIT = 200


@dataclass(frozen=True, slots=True)
class AlarmCard:
    """One alarm as the board and the alarm page show it; times are local."""

    id: int
    resident_id: int
    resident: str
    home_id: str
    type: str
    severity: Severity
    status: AlarmStatus
    outcome: str | None
    summary: str
    event_count: int
    opened_at: datetime
    age_minutes: int
    unanswered: bool
    taken_by: str | None
    short_code: str | None
    # The outcomes the resolve form offers (the lifecycle refuses the others from this status).
    outcomes: tuple[Outcome, ...]

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def can_take(self) -> bool:
        return self.status in UNTAKEN_STATUSES

    @property
    def can_register_on_site(self) -> bool:
        return self.status is AlarmStatus.ACKNOWLEDGED


@dataclass(frozen=True, slots=True)
class TestModeHome:
    """A home with devices in test mode now: their events escalate nothing until ``until``."""

    home_id: str
    devices: int
    until: datetime


@dataclass(frozen=True, slots=True)
class Board:
    as_of: datetime
    alarms: list[AlarmCard]
    total: int
    test_mode: list[TestModeHome] = field(default_factory=list)

    @property
    def unanswered(self) -> list[AlarmCard]:
        return [alarm for alarm in self.alarms if alarm.unanswered]


@dataclass(frozen=True, slots=True)
class NotificationView:
    """One outgoing message and where it is now (queued … delivered, failed)."""

    id: int
    channel: str
    purpose: str
    recipient: str
    status: str
    attempts: int
    last_error: str | None
    step: int | None
    round: int | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class TimelineItem:
    at: datetime
    actor: str
    kind: str
    from_status: str | None
    to_status: str | None
    detail: dict[str, Any]
    notification: NotificationView | None = None


@dataclass(frozen=True, slots=True)
class AlarmPage:
    alarm: AlarmCard
    timeline: list[TimelineItem]
    notifications: list[NotificationView] = field(default_factory=list)


def load_board(session: Session, *, now: datetime, tz: tzinfo) -> Board:
    """The open alarms, most severe first and then oldest first, as of ``now``."""
    rows = session.execute(
        select(Alarm, Resident.label)
        .join(Resident, Alarm.resident_id == Resident.id)
        .where(Alarm.status.in_(ACTIVE_STATUSES))
        .order_by(_SEVERITY_RANK, Alarm.opened_at, Alarm.id)
        .limit(BOARD_LIMIT + 1)
    ).all()
    shown = rows[:BOARD_LIMIT]
    takers = _takers(session, [alarm.id for alarm, _ in shown])
    names = _staff_names(session, takers.values())
    cards = [
        _card(alarm, label, now=now, tz=tz, taken_by=_actor_name(takers.get(alarm.id), names))
        for alarm, label in shown
    ]
    return Board(
        as_of=now.astimezone(tz),
        alarms=cards,
        total=len(rows),
        test_mode=_test_mode_homes(session, now=now, tz=tz),
    )


def _test_mode_homes(session: Session, *, now: datetime, tz: tzinfo) -> list[TestModeHome]:
    """Homes whose active devices are in test mode at ``now`` (so nurses know alarms from them
    will not come), by home."""
    rows = session.execute(
        select(Device.home_id, func.count(), func.max(Device.test_mode_until))
        .where(Device.retired_at.is_(None), Device.test_mode_until > now)
        .group_by(Device.home_id)
        .order_by(Device.home_id)
    ).all()
    return [
        TestModeHome(home, count, until.astimezone(tz))
        for home, count, until in rows
        if until is not None  # never: the WHERE clause needs a test_mode_until
    ]


def load_alarm_page(
    session: Session, alarm_id: int, *, now: datetime, tz: tzinfo
) -> AlarmPage | None:
    """One alarm with its whole timeline and its notifications; ``None`` if there is none."""
    row = session.execute(
        select(Alarm, Resident.label)
        .join(Resident, Alarm.resident_id == Resident.id)
        .where(Alarm.id == alarm_id)
        .execution_options(populate_existing=True)
    ).one_or_none()
    if row is None:
        return None
    alarm, label = row
    entries = session.scalars(
        select(AlarmTimelineEntry)
        .where(AlarmTimelineEntry.alarm_id == alarm_id)
        .order_by(AlarmTimelineEntry.at, AlarmTimelineEntry.id)
    ).all()
    notes = session.scalars(
        select(Notification)
        .where(Notification.alarm_id == alarm_id)
        .order_by(Notification.created_at, Notification.id)
    ).all()
    takers = _takers(session, [alarm_id])
    actors = [entry.actor for entry in entries] + list(takers.values())
    names = _staff_names(session, actors)
    recipients = _recipient_names(session, notes)
    views = {
        note.id: NotificationView(
            id=note.id,
            channel=note.channel,
            purpose=note.purpose,
            recipient=recipients.get((note.recipient_kind, note.recipient_id), "?"),
            status=note.status,
            attempts=note.attempts,
            last_error=note.last_error,
            step=None if note.step_index is None else note.step_index + 1,
            round=note.round,
            created_at=note.created_at.astimezone(tz),
            updated_at=note.updated_at.astimezone(tz),
        )
        for note in notes
    }
    timeline = [
        TimelineItem(
            at=entry.at.astimezone(tz),
            actor=_actor_name(entry.actor, names) or entry.actor,
            kind=entry.kind,
            from_status=entry.from_status,
            to_status=entry.to_status,
            detail=dict(entry.detail or {}),
            notification=_notification_of(entry, views),
        )
        for entry in entries
    ]
    card = _card(alarm, label, now=now, tz=tz, taken_by=_actor_name(takers.get(alarm_id), names))
    return AlarmPage(alarm=card, timeline=timeline, notifications=list(views.values()))


def open_alarms_fingerprint(session: Session) -> tuple[str, list[tuple[int, bool]]]:
    """A cheap digest of the open alarms (ids, statuses, last change, unanswered), and each
    open alarm's ``(id, is_red)``: the events stream compares them between ticks."""
    rows = session.execute(
        select(Alarm.id, Alarm.status, Alarm.severity, Alarm.updated_at, Alarm.unanswered)
        .where(Alarm.status.in_(ACTIVE_STATUSES))
        .order_by(Alarm.id)
    ).all()
    digest = hashlib.sha256()
    for alarm_id, status, severity, updated_at, unanswered in rows:
        digest.update(
            f"{alarm_id}|{status}|{severity}|{updated_at.isoformat()}|{int(unanswered)};".encode()
        )
    reds = [(alarm_id, Severity(severity) is Severity.RED) for alarm_id, _, severity, _, _ in rows]
    return digest.hexdigest()[:16], reds


def recently_audited(
    session: Session,
    *,
    user_id: int,
    action: str,
    resident_ids: Iterable[int],
    since: datetime,
) -> set[int]:
    """Residents whose ``action`` entry by ``user_id`` is newer than ``since`` (to thin out
    the audit rows a self-refreshing board would otherwise write every few seconds)."""
    ids = sorted(set(resident_ids))
    if not ids:
        return set()
    found = session.scalars(
        select(AuditEntry.resident_id).where(
            AuditEntry.resident_id.in_(ids),
            AuditEntry.at >= since,
            AuditEntry.user_id == user_id,
            AuditEntry.action == action,
        )
    ).all()
    return {resident_id for resident_id in found if resident_id is not None}


def _card(
    alarm: Alarm, resident: str, *, now: datetime, tz: tzinfo, taken_by: str | None
) -> AlarmCard:
    status = AlarmStatus(alarm.status)
    if status in UNTAKEN_STATUSES:
        outcomes = tuple(o for o in Outcome if o in UNTAKEN_RESOLVE_OUTCOMES)
    else:
        outcomes = tuple(Outcome)
    return AlarmCard(
        id=alarm.id,
        resident_id=alarm.resident_id,
        resident=resident,
        home_id=alarm.home_id,
        type=alarm.type,
        severity=Severity(alarm.severity),
        status=status,
        outcome=alarm.outcome,
        summary=alarm.summary,
        event_count=alarm.event_count,
        opened_at=alarm.opened_at.astimezone(tz),
        age_minutes=max(0, int((now - alarm.opened_at) // timedelta(minutes=1))),
        unanswered=alarm.unanswered,
        taken_by=taken_by,
        short_code=alarm.short_code,
        outcomes=outcomes,
    )


def _takers(session: Session, alarm_ids: Sequence[int]) -> dict[int, str]:
    """The actor who took each alarm (its latest transition to acknowledged)."""
    if not alarm_ids:
        return {}
    rows = session.execute(
        select(AlarmTimelineEntry.alarm_id, AlarmTimelineEntry.actor)
        .where(
            AlarmTimelineEntry.alarm_id.in_(alarm_ids),
            AlarmTimelineEntry.kind == "transition",
            AlarmTimelineEntry.to_status == AlarmStatus.ACKNOWLEDGED.value,
        )
        .order_by(AlarmTimelineEntry.at, AlarmTimelineEntry.id)
    ).all()
    return {alarm_id: actor for alarm_id, actor in rows}


def _staff_names(session: Session, actors: Iterable[str]) -> dict[str, str]:
    """username → display name, for the ``user:<username>`` actors among ``actors``."""
    usernames = {a.removeprefix("user:") for a in actors if a.startswith("user:")}
    if not usernames:
        return {}
    rows = session.execute(
        select(StaffUser.username, StaffUser.display_name).where(
            StaffUser.username.in_(sorted(usernames))
        )
    ).all()
    return {username: display for username, display in rows}


def _actor_name(actor: str | None, names: dict[str, str]) -> str | None:
    """A timeline actor as a person reads it: a staff member's name, an SMS replier's name."""
    if actor is None:
        return None
    prefix, _, rest = actor.partition(":")
    if prefix == "user" and rest:
        return names.get(rest, rest)
    if prefix in ("sms", "voice") and rest:
        return rest
    return actor


def _recipient_names(session: Session, notes: Sequence[Notification]) -> dict[tuple[str, int], str]:
    staff_ids = sorted({n.recipient_id for n in notes if n.recipient_kind == "staff"})
    relative_ids = sorted({n.recipient_id for n in notes if n.recipient_kind == "relative"})
    names: dict[tuple[str, int], str] = {}
    if staff_ids:
        for user_id, display in session.execute(
            select(StaffUser.id, StaffUser.display_name).where(StaffUser.id.in_(staff_ids))
        ).all():
            names[("staff", user_id)] = display
    if relative_ids:
        for relative_id, name in session.execute(
            select(Relative.id, Relative.name).where(Relative.id.in_(relative_ids))
        ).all():
            names[("relative", relative_id)] = name
    return names


def _notification_of(
    entry: AlarmTimelineEntry, views: dict[int, NotificationView]
) -> NotificationView | None:
    raw = (entry.detail or {}).get("notification_id")
    return views.get(raw) if isinstance(raw, int) else None


__all__ = [
    "AlarmCard",
    "AlarmPage",
    "Board",
    "NotificationView",
    "TimelineItem",
    "load_alarm_page",
    "load_board",
    "open_alarms_fingerprint",
    "recently_audited",
]
