"""The alarm lifecycle against the database: open or join, transition, cancel, notes, queries.

Every function takes the caller's ``Session`` and the time ``now`` (from the caller's clock) and
never commits: the caller owns the transaction, so an alarm and whatever caused it are committed
together. This module is the only code that assigns ``Alarm.status``, and it does so only after
``hub.alarms.lifecycle.check_transition`` agreed. The timeline is only ever appended to.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final, TypeVar, cast

from sqlalchemy import ColumnElement, Row, Table, func, select, update
from sqlalchemy.orm import Session, selectinload

from hub.alarms.lifecycle import (
    ACTIVE_STATUSES,
    INITIAL_STATUS,
    UNTAKEN_STATUSES,
    Outcome,
    TransitionError,
    check_transition,
)
from hub.storage.bulk import append_rows, one_of
from hub.storage.db import is_postgres
from hub.storage.models import Alarm, AlarmStatus, AlarmTimelineEntry, Resident, Severity

logger = logging.getLogger(__name__)

DEFAULT_ACTOR: Final = "hub:rules"

# Timeline kinds this module writes itself; ``add_note`` may not forge them.
KIND_TRANSITION: Final = "transition"
KIND_EVENT_JOINED: Final = "event_joined"
KIND_CANCEL_REFUSED: Final = "cancel_refused"
_RESERVED_KINDS: Final = frozenset({KIND_TRANSITION, KIND_EVENT_JOINED, KIND_CANCEL_REFUSED})
_KIND_MAX_CHARS: Final = 32
_ACTOR_MAX_CHARS: Final = 128
_SUMMARY_MAX_CHARS: Final = 300
_IN_CHUNK: Final = 500  # ids in one IN (...) list
_T = TypeVar("_T")
_TIMELINE = cast(Table, AlarmTimelineEntry.__table__)


class AlarmNotFound(LookupError):
    """No alarm has this id."""

    def __init__(self, alarm_id: int) -> None:
        super().__init__(f"alarm {alarm_id} not found")
        self.alarm_id = alarm_id


def open_or_join(
    session: Session,
    *,
    now: datetime,
    resident_id: int,
    home_id: str,
    type: str,
    severity: Severity,
    summary: str,
    device_id: str | None = None,
    actor: str = DEFAULT_ACTOR,
) -> tuple[Alarm, bool]:
    """Join the resident's active alarm of ``type``, or open a new one; ``(alarm, created)``.

    Joining counts the event (``event_count``) and records it in the timeline; opening records
    the transition to ``open``. The resident's row is locked first (``FOR UPDATE`` on
    PostgreSQL, the write lock on SQLite), so two hubs never open two alarms of one kind.
    """
    _lock_resident(session, resident_id)
    active = session.scalars(
        select(Alarm)
        .where(
            Alarm.resident_id == resident_id,
            Alarm.type == type,
            Alarm.status.in_(ACTIVE_STATUSES),
        )
        .order_by(Alarm.opened_at, Alarm.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()
    summary = summary[:_SUMMARY_MAX_CHARS]
    if active is not None:
        active.event_count += 1
        active.updated_at = now
        _append(
            session,
            active,
            at=now,
            actor=actor,
            kind=KIND_EVENT_JOINED,
            detail={"summary": summary, "device_id": device_id, "event_count": active.event_count},
        )
        session.flush()
        logger.info("alarm %s (%s) joined: event %d", active.id, type, active.event_count)
        return active, False

    alarm = Alarm(
        resident_id=resident_id,
        home_id=home_id,
        device_id=device_id,
        type=type,
        severity=Severity(severity),
        status=INITIAL_STATUS,
        outcome=None,
        summary=summary,
        opened_at=now,
        updated_at=now,
        event_count=1,
    )
    session.add(alarm)
    _append(
        session,
        alarm,
        at=now,
        actor=actor,
        kind=KIND_TRANSITION,
        from_status=None,
        to_status=INITIAL_STATUS,
        detail={"summary": summary, "device_id": device_id, "severity": alarm.severity.value},
    )
    session.flush()
    logger.info("alarm %s opened: %s, %s, resident %s", alarm.id, type, severity, resident_id)
    return alarm, True


def transition(
    session: Session,
    alarm_id: int,
    *,
    to: AlarmStatus,
    actor: str,
    now: datetime,
    outcome: str | None = None,
    note: str | None = None,
) -> Alarm:
    """Move an alarm to ``to`` if the lifecycle allows it, and record it in the timeline.

    Raises ``AlarmNotFound`` or ``hub.alarms.lifecycle.TransitionError`` (nothing is changed).
    """
    alarm = _locked_alarm(session, alarm_id)
    transition_locked(session, alarm, to=to, actor=actor, now=now, outcome=outcome, note=note)
    session.flush()
    return alarm


def transition_locked(
    session: Session,
    alarm: Alarm,
    *,
    to: AlarmStatus,
    actor: str,
    now: datetime,
    outcome: str | None = None,
    note: str | None = None,
) -> None:
    """``transition`` for an alarm the caller has already read under a lock in this transaction
    (``lock_alarms``); nothing is flushed."""
    current, target, detail = _apply_transition(alarm, to, actor, now, outcome, note)
    _append(
        session,
        alarm,
        at=now,
        actor=actor,
        kind=KIND_TRANSITION,
        from_status=current,
        to_status=target,
        detail=detail,
    )


def transition_many_locked(
    session: Session,
    alarms: Sequence[tuple[int, AlarmStatus]],
    *,
    to: AlarmStatus,
    actor: str,
    now: datetime,
    notes_before: Sequence[tuple[int, str, dict[str, Any]]] = (),
) -> None:
    """``transition_locked`` for many alarms at once (a step tick marks hundreds 'notified'),
    given as (id, status read under the caller's lock): every transition is checked first, then
    one UPDATE per starting status and one batched INSERT of the timeline rows; no ORM objects
    are loaded (Alarm objects already in the session are updated to match). ``notes_before``
    are ``add_notes_locked`` notes whose entries go first in that same INSERT."""
    target = AlarmStatus(to)
    by_status: dict[AlarmStatus, list[int]] = {}
    for alarm_id, current in alarms:
        check_transition(current, target, None)
        by_status.setdefault(AlarmStatus(current), []).append(alarm_id)
    rows, touched = _note_rows(notes_before, now, actor)
    detail: dict[str, Any] = {"outcome": None, "note": None}
    for current, ids in by_status.items():
        for chunk in chunked(ids):
            changed = session.execute(
                update(Alarm)
                .where(one_of(session, Alarm.id, chunk), Alarm.status == current)
                .values(status=target, updated_at=now)
            )
            if _rowcount(changed) != len(chunk):
                # the caller's lock should make this impossible: refuse rather than record a
                # transition that did not happen
                raise TransitionError(current, target, "an alarm changed while it was locked")
        rows.extend(
            _entry_row(a, now, actor, KIND_TRANSITION, detail, current.value, target.value)
            for a in ids
        )
        touched.difference_update(ids)  # their updated_at is set already
        logger.info("%d alarm(s): %s → %s by %s", len(ids), current.value, target.value, actor)
    _touch(session, touched, now)
    _insert_entries(session, rows)


def chunked(ids: Sequence[_T], size: int = _IN_CHUNK) -> list[Sequence[_T]]:
    """``ids`` in slices short enough for one ``IN (...)`` list."""
    return [ids[k : k + size] for k in range(0, len(ids), size)]


def _rowcount(result: object) -> int:
    return int(getattr(result, "rowcount", -1))


def _apply_transition(
    alarm: Alarm,
    to: AlarmStatus,
    actor: str,
    now: datetime,
    outcome: str | None,
    note: str | None,
) -> tuple[AlarmStatus, AlarmStatus, dict[str, Any]]:
    """Check and apply a status change to a locked alarm; (from, to, timeline detail)."""
    current = AlarmStatus(alarm.status)
    target = AlarmStatus(to)
    check_transition(current, target, outcome)
    detail: dict[str, Any] = {"outcome": outcome, "note": note}
    if target is AlarmStatus.RESOLVED and current in UNTAKEN_STATUSES:
        # Closed without an acknowledgement: the resolver is the person who took it.
        detail["taken_by"] = actor
    alarm.status = target
    alarm.updated_at = now
    if target is AlarmStatus.RESOLVED:
        alarm.outcome = Outcome(outcome).value if outcome is not None else None
    logger.info("alarm %s: %s → %s by %s", alarm.id, current.value, target.value, actor)
    return current, target, detail


def cancel_open(
    session: Session,
    *,
    resident_id: int,
    type: str,
    now: datetime,
    actor: str,
    reason: str,
) -> Alarm | None:
    """Cancel the resident's active alarm of ``type`` if nobody has taken it yet.

    Returns the cancelled alarm; ``None`` when there is no active alarm of that type, or when it
    has already been acknowledged — then the request is recorded in its timeline
    (``cancel_refused``) and the alarm stays with the person who took it.
    """
    _lock_resident(session, resident_id)
    active = session.scalars(
        select(Alarm)
        .where(
            Alarm.resident_id == resident_id,
            Alarm.type == type,
            Alarm.status.in_(ACTIVE_STATUSES),
        )
        .order_by(Alarm.opened_at, Alarm.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()
    if active is None:
        return None
    if active.status not in UNTAKEN_STATUSES:
        _append(
            session,
            active,
            at=now,
            actor=actor,
            kind=KIND_CANCEL_REFUSED,
            detail={"reason": reason, "status": AlarmStatus(active.status).value},
        )
        active.updated_at = now
        session.flush()
        logger.info("alarm %s: cancel refused, already %s", active.id, active.status)
        return None
    return transition(
        session, active.id, to=AlarmStatus.CANCELLED, actor=actor, now=now, note=reason
    )


def add_note(
    session: Session,
    alarm_id: int,
    *,
    now: datetime,
    actor: str,
    kind: str,
    detail: dict[str, Any],
) -> AlarmTimelineEntry:
    """Append a timeline entry of ``kind`` (note, condition_cleared, prealarm, notification, …).

    Status changes go through ``transition``: the kinds this module writes itself are refused.
    """
    _check_note_kind(kind)
    alarm = _locked_alarm(session, alarm_id)
    alarm.updated_at = now
    entry = _append(session, alarm, at=now, actor=actor, kind=kind, detail=detail)
    session.flush()
    return entry


def add_notes_locked(
    session: Session,
    notes: Sequence[tuple[int, str, dict[str, Any]]],
    *,
    now: datetime,
    actor: str,
) -> None:
    """Many ``add_note`` at once, as (alarm id, kind, detail), in this order: one batched
    INSERT and one UPDATE of the alarms' ``updated_at`` per few hundred alarms, no ORM objects
    loaded (a step tick writes hundreds). The alarms are locked by the caller."""
    rows, touched = _note_rows(notes, now, actor)
    _touch(session, touched, now)
    _insert_entries(session, rows)


def _note_rows(
    notes: Sequence[tuple[int, str, dict[str, Any]]], now: datetime, actor: str
) -> tuple[list[dict[str, Any]], set[int]]:
    """The timeline rows of ``notes`` (kinds checked) and the alarms they touch."""
    rows: list[dict[str, Any]] = []
    for alarm_id, kind, detail in notes:
        _check_note_kind(kind)
        rows.append(_entry_row(alarm_id, now, actor, kind, detail, None, None))
    return rows, {row["alarm_id"] for row in rows}


def _touch(session: Session, alarm_ids: set[int], now: datetime) -> None:
    """Set ``updated_at`` of these alarms (a note is a change the board shows)."""
    for chunk in chunked(sorted(alarm_ids)):
        session.execute(
            update(Alarm).where(one_of(session, Alarm.id, chunk)).values(updated_at=now)
        )


def _check_note_kind(kind: str) -> None:
    if kind in _RESERVED_KINDS:
        raise ValueError(f"timeline kind {kind!r} is written by the lifecycle itself")
    if not kind or len(kind) > _KIND_MAX_CHARS:
        raise ValueError(f"timeline kind must be 1 to {_KIND_MAX_CHARS} characters")


def lock_alarms(
    session: Session, alarm_ids: Sequence[int], *, skip_locked: bool = False
) -> dict[int, Alarm]:
    """The alarms of ``alarm_ids``, freshly read and locked until the transaction ends, by id.

    One statement for the lot (a step tick handles hundreds). ``skip_locked``: on PostgreSQL an
    alarm another transaction holds (a person taking it right now) is left out instead of
    waited for, so a batch never waits on — or deadlocks with — a person's action; the caller
    tries those again later. SQLite has one writer: the no-op write takes its lock for all.
    """
    ids = _take_write_lock(session, alarm_ids)
    if not ids:
        return {}
    rows = session.scalars(
        select(Alarm)
        .where(Alarm.id.in_(ids))
        .order_by(Alarm.id)
        .with_for_update(skip_locked=skip_locked)
        .execution_options(populate_existing=True)
    ).all()
    return {alarm.id: alarm for alarm in rows}


def lock_alarm_facts(
    session: Session, alarm_ids: Sequence[int], *, skip_locked: bool = False
) -> dict[int, Row[int, AlarmStatus, str, Severity, int, str | None]]:
    """``lock_alarms`` without ORM objects: (id, status, type, severity, resident_id,
    short_code) of each alarm, locked the same way, by id (the step tick's read)."""
    ids = _take_write_lock(session, alarm_ids)
    found: dict[int, Row[int, AlarmStatus, str, Severity, int, str | None]] = {}
    for chunk in chunked(ids):
        for row in session.execute(
            select(
                Alarm.id,
                Alarm.status,
                Alarm.type,
                Alarm.severity,
                Alarm.resident_id,
                Alarm.short_code,
            )
            .where(one_of(session, Alarm.id, chunk))
            .order_by(Alarm.id)
            .with_for_update(skip_locked=skip_locked)
        ):
            found[row[0]] = row
    return found


def _take_write_lock(session: Session, alarm_ids: Sequence[int]) -> list[int]:
    """The distinct ids in lock order; on SQLite, a no-op write takes the database's one write
    lock first (PostgreSQL locks the rows with ``FOR UPDATE``). Any write statement takes it,
    whatever rows it touches, so the no-op names one alarm, not all of them."""
    ids = sorted(set(alarm_ids))
    if ids and not is_postgres(session.get_bind()):
        session.execute(
            update(Alarm).where(Alarm.id == ids[0]).values(id=Alarm.id),
            execution_options={"synchronize_session": False},
        )
    return ids


def get_alarm(session: Session, alarm_id: int) -> Alarm:
    """One alarm with its timeline (oldest entry first); ``AlarmNotFound`` if there is none."""
    alarm = session.scalars(
        select(Alarm)
        .where(Alarm.id == alarm_id)
        .options(selectinload(Alarm.timeline))
        .execution_options(populate_existing=True)
    ).one_or_none()
    if alarm is None:
        raise AlarmNotFound(alarm_id)
    return alarm


def list_alarms(
    session: Session,
    *,
    status: Sequence[str] | None = None,
    resident_id: int | None = None,
    type: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[Alarm]:
    """Alarms matching every given filter, newest first; ``since ≤ opened_at < until``."""
    if limit < 0 or offset < 0:
        raise ValueError("limit and offset must not be negative")
    query = (
        select(Alarm)
        .where(*_filters(status, resident_id, type, since, until))
        .order_by(Alarm.opened_at.desc(), Alarm.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return list(session.scalars(query))


def count_alarms(
    session: Session,
    *,
    status: Sequence[str] | None = None,
    resident_id: int | None = None,
    type: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> int:
    """How many alarms ``list_alarms`` would find with the same filters and no limit."""
    query = (
        select(func.count())
        .select_from(Alarm)
        .where(*_filters(status, resident_id, type, since, until))
    )
    return session.scalar(query) or 0


def _filters(
    status: Sequence[str] | None,
    resident_id: int | None,
    type: str | None,
    since: datetime | None,
    until: datetime | None,
) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if status:
        try:
            statuses = sorted({AlarmStatus(value) for value in status})
        except ValueError:
            valid = ", ".join(s.value for s in AlarmStatus)
            raise ValueError(f"unknown alarm status in {list(status)}; valid: {valid}") from None
        conditions.append(Alarm.status.in_(statuses))
    if resident_id is not None:
        conditions.append(Alarm.resident_id == resident_id)
    if type is not None:
        conditions.append(Alarm.type == type)
    if since is not None:
        conditions.append(Alarm.opened_at >= since)
    if until is not None:
        conditions.append(Alarm.opened_at < until)
    return conditions


def _lock_resident(session: Session, resident_id: int) -> None:
    """Serialise alarm changes per resident until the transaction ends."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(Resident.id).where(Resident.id == resident_id).with_for_update())
    else:
        # SQLite has no row locks: a no-op write takes the database's write lock now, before
        # the reads that decide, so a concurrent writer waits instead of deciding on stale rows.
        session.execute(
            update(Resident).where(Resident.id == resident_id).values(id=Resident.id),
            execution_options={"synchronize_session": False},
        )


def _locked_alarm(session: Session, alarm_id: int) -> Alarm:
    """The alarm, freshly read and locked for the rest of the transaction."""
    if session.get_bind().dialect.name != "postgresql":
        session.execute(
            update(Alarm).where(Alarm.id == alarm_id).values(id=Alarm.id),
            execution_options={"synchronize_session": False},
        )
    alarm = session.scalars(
        select(Alarm)
        .where(Alarm.id == alarm_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()
    if alarm is None:
        raise AlarmNotFound(alarm_id)
    return alarm


def _append(
    session: Session,
    alarm: Alarm,
    *,
    at: datetime,
    actor: str,
    kind: str,
    detail: dict[str, Any],
    from_status: AlarmStatus | None = None,
    to_status: AlarmStatus | None = None,
) -> AlarmTimelineEntry:
    """A new timeline entry; entries are never updated or deleted (a trigger enforces it)."""
    entry = AlarmTimelineEntry(
        alarm=alarm,
        at=at,
        actor=actor[:_ACTOR_MAX_CHARS],
        kind=kind,
        from_status=from_status.value if from_status is not None else None,
        to_status=to_status.value if to_status is not None else None,
        detail=detail,
    )
    session.add(entry)
    return entry


def _entry_row(
    alarm_id: int,
    at: datetime,
    actor: str,
    kind: str,
    detail: dict[str, Any],
    from_status: str | None,
    to_status: str | None,
) -> dict[str, Any]:
    return {
        "alarm_id": alarm_id,
        "at": at,
        "actor": actor[:_ACTOR_MAX_CHARS],
        "kind": kind,
        "from_status": from_status,
        "to_status": to_status,
        "detail": detail,
    }


def _insert_entries(session: Session, rows: list[dict[str, Any]]) -> None:
    """Append timeline rows in one statement (nothing read back)."""
    # Core, not the ORM's bulk INSERT: its per-row work costs more than the row; COPY on
    # PostgreSQL (hub.storage.bulk)
    append_rows(session, _TIMELINE, rows)


__all__ = [
    "AlarmNotFound",
    "TransitionError",
    "add_note",
    "add_notes_locked",
    "cancel_open",
    "count_alarms",
    "get_alarm",
    "list_alarms",
    "lock_alarm_facts",
    "lock_alarms",
    "open_or_join",
    "transition",
    "transition_locked",
    "transition_many_locked",
]
