"""``/api/v1/alarms``: list, read and move alarms through the lifecycle (acknowledge, on-site,
resolve) on behalf of the logged-in staff user."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, status
from pydantic import AwareDatetime
from sqlalchemy.orm import Session

from care_portal.const import (
    API_PAGE_DEFAULT,
    API_PAGE_MAX,
    API_PREFIX,
    DB_BIGINT_MAX,
    DB_INT_MAX,
    NO_NUL_PATTERN,
)
from care_portal.deps import AlarmChangedHookDep, CareStaffUser, ClockDep, SessionDep
from care_portal.schemas.alarms import (
    AlarmDetailPublic,
    AlarmPublic,
    AlarmsPublic,
    ResolveRequest,
    TransitionRequest,
)
from care_portal.schemas.auth import ErrorPublic
from hub.alarms import service
from hub.alarms.lifecycle import TransitionError
from hub.alarms.service import AlarmNotFound
from hub.clock import Clock
from hub.storage.models import AlarmStatus, StaffUser

logger = logging.getLogger(__name__)

router = APIRouter(prefix=f"{API_PREFIX}/alarms", tags=["alarms"])

AlarmId = Annotated[int, Path(ge=1, le=DB_BIGINT_MAX)]

_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    status.HTTP_404_NOT_FOUND: {"model": ErrorPublic, "description": "No such alarm"}
}
_MOVE_RESPONSES: dict[int | str, dict[str, Any]] = {
    status.HTTP_400_BAD_REQUEST: {
        "model": ErrorPublic,
        "description": "The body is not well-formed JSON",
    },
    **_NOT_FOUND,
    status.HTTP_409_CONFLICT: {
        "model": ErrorPublic,
        "description": "The lifecycle does not allow this transition from the alarm's status",
    },
}


def actor_of(user: StaffUser) -> str:
    """How a staff user is named in an alarm's timeline."""
    return f"user:{user.username}"


@router.get("", response_model=AlarmsPublic)
def list_alarms(
    session: SessionDep,
    user: CareStaffUser,
    alarm_status: Annotated[
        list[AlarmStatus] | None, Query(alias="status", description="repeat for several")
    ] = None,
    resident_id: Annotated[int | None, Query(ge=1, le=DB_INT_MAX)] = None,
    alarm_type: Annotated[
        str | None, Query(alias="type", max_length=32, pattern=NO_NUL_PATTERN)
    ] = None,
    since: Annotated[AwareDatetime | None, Query(description="opened at or after")] = None,
    until: Annotated[AwareDatetime | None, Query(description="opened before")] = None,
    limit: Annotated[int, Query(ge=1, le=API_PAGE_MAX)] = API_PAGE_DEFAULT,
    offset: Annotated[int, Query(ge=0, le=DB_BIGINT_MAX)] = 0,
) -> AlarmsPublic:
    """Alarms matching every filter, newest first, with the total count of matches."""
    statuses = [s.value for s in alarm_status] if alarm_status else None
    alarms = service.list_alarms(
        session,
        status=statuses,
        resident_id=resident_id,
        type=alarm_type,
        since=since,
        until=until,
        limit=limit,
        offset=offset,
    )
    count = service.count_alarms(
        session,
        status=statuses,
        resident_id=resident_id,
        type=alarm_type,
        since=since,
        until=until,
    )
    logger.info("%s listed alarms (%d of %d)", actor_of(user), len(alarms), count)
    return AlarmsPublic(data=[AlarmPublic.model_validate(a) for a in alarms], count=count)


@router.get("/{alarm_id}", response_model=AlarmDetailPublic, responses=_NOT_FOUND)
def get_alarm(alarm_id: AlarmId, session: SessionDep, user: CareStaffUser) -> AlarmDetailPublic:
    """One alarm with its whole timeline, oldest entry first."""
    try:
        alarm = service.get_alarm(session, alarm_id)
    except AlarmNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from None
    logger.info("%s read alarm %d", actor_of(user), alarm_id)
    return AlarmDetailPublic.model_validate(alarm)


@router.post("/{alarm_id}/acknowledge", response_model=AlarmDetailPublic, responses=_MOVE_RESPONSES)
def acknowledge_alarm(
    alarm_id: AlarmId,
    session: SessionDep,
    clock: ClockDep,
    user: CareStaffUser,
    on_changed: AlarmChangedHookDep,
    body: TransitionRequest | None = None,
) -> AlarmDetailPublic:
    """Take the alarm: the user is now responsible for it (from open or notified)."""
    note = body.note if body else None
    return _move(session, clock, user, on_changed, alarm_id, AlarmStatus.ACKNOWLEDGED, None, note)


@router.post("/{alarm_id}/on-site", response_model=AlarmDetailPublic, responses=_MOVE_RESPONSES)
def register_on_site(
    alarm_id: AlarmId,
    session: SessionDep,
    clock: ClockDep,
    user: CareStaffUser,
    on_changed: AlarmChangedHookDep,
    body: TransitionRequest | None = None,
) -> AlarmDetailPublic:
    """Register presence at the resident's home (from acknowledged only)."""
    note = body.note if body else None
    return _move(session, clock, user, on_changed, alarm_id, AlarmStatus.ON_SITE, None, note)


@router.post("/{alarm_id}/resolve", response_model=AlarmDetailPublic, responses=_MOVE_RESPONSES)
def resolve_alarm(
    alarm_id: AlarmId,
    body: ResolveRequest,
    session: SessionDep,
    clock: ClockDep,
    user: CareStaffUser,
    on_changed: AlarmChangedHookDep,
) -> AlarmDetailPublic:
    """Close the alarm with an outcome (from acknowledged or on_site; from open or notified only
    as technical, test or false_alarm)."""
    return _move(
        session,
        clock,
        user,
        on_changed,
        alarm_id,
        AlarmStatus.RESOLVED,
        body.outcome.value,
        body.note,
    )


def _move(
    session: Session,
    clock: Clock,
    user: StaffUser,
    on_changed: AlarmChangedHookDep,
    alarm_id: int,
    to: AlarmStatus,
    outcome: str | None,
    note: str | None,
) -> AlarmDetailPublic:
    """One transition in one transaction; 404 / 409 on a refusal, the hook after the commit."""
    try:
        service.transition(
            session,
            alarm_id,
            to=to,
            actor=actor_of(user),
            now=clock.now(),
            outcome=outcome,
            note=note,
        )
    except AlarmNotFound as exc:
        session.rollback()
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from None
    except TransitionError as exc:
        session.rollback()
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
    session.commit()
    if on_changed is not None:
        try:
            on_changed(alarm_id)
        except Exception:  # the change is committed; a failing listener must not undo the answer
            logger.exception("on_alarm_changed hook failed for alarm %d", alarm_id)
    return AlarmDetailPublic.model_validate(service.get_alarm(session, alarm_id))
