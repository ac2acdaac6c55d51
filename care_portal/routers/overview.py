"""The overview page: homes and their devices, the latest events and the message intake."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Final

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from care_portal.const import OVERVIEW_POLL_INTERVAL_S
from care_portal.deps import ClockDep, SessionDep, TemplatesDep, TimezoneDep, TranslatorDep
from care_portal.queries.overview import load_overview
from care_portal.schemas.overview import Overview
from care_portal.templating import render
from care_portal.web_session import WebUserDep, audit_many
from hub.storage.models import Alarm, Resident, StaffRole, StaffUser

router = APIRouter(tags=["overview"], default_response_class=HTMLResponse)

AUDIT_ACTION: Final = "overview.read"
# Sessions whose already-audited residents are remembered (see ``_AuditedResidents``).
_AUDIT_MEMORY_SESSIONS: Final = 5_000


class _AuditedResidents:
    """Residents each browser session has already been audited for, so the fragment's refresh
    every few seconds logs only residents that newly appear, not the same ones again and again.
    In memory: after a restart a refresh logs everyone once more (more, never fewer entries)."""

    def __init__(self) -> None:
        self._seen: OrderedDict[int, set[int]] = OrderedDict()
        self._lock = threading.Lock()

    def reset(self, session_id: int, residents: set[int]) -> None:
        with self._lock:
            self._seen[session_id] = set(residents)
            self._seen.move_to_end(session_id)
            while len(self._seen) > _AUDIT_MEMORY_SESSIONS:
                self._seen.popitem(last=False)

    def unseen(self, session_id: int, residents: set[int]) -> set[int]:
        with self._lock:
            return residents - self._seen.get(session_id, set())

    def mark(self, session_id: int, residents: set[int]) -> None:
        """Remember ``residents`` as audited for this session (after the audit is committed)."""
        with self._lock:
            self._seen.setdefault(session_id, set()).update(residents)
            self._seen.move_to_end(session_id)


_audit_memory_lock = threading.Lock()


def _audited(request: Request) -> _AuditedResidents:
    with _audit_memory_lock:
        memory: _AuditedResidents | None = getattr(request.app.state, "overview_audited", None)
        if memory is None:
            memory = _AuditedResidents()
            request.app.state.overview_audited = memory
        return memory


def sees_care_details(user: StaffUser) -> bool:
    """Installers see homes and devices, never alarms or event history."""
    return user.role is not StaffRole.INSTALLER


def _load(session: Session, clock: ClockDep, tz: TimezoneDep, user: StaffUser) -> Overview:
    overview = load_overview(session, now=clock.now(), tz=tz)
    if not sees_care_details(user):
        overview = overview.model_copy(update={"alarms": [], "alarms_total": 0, "events": []})
    return overview


def _shown_residents(session: Session, overview: Overview) -> set[int]:
    """The residents whose data the page shows: those of the homes listed and of the alarms."""
    home_ids = [home.id for home in overview.homes if home.residents]
    alarm_ids = [alarm.id for alarm in overview.alarms]
    shown: set[int] = set()
    if home_ids:
        shown.update(session.scalars(select(Resident.id).where(Resident.home_id.in_(home_ids))))
    if alarm_ids:
        shown.update(session.scalars(select(Alarm.resident_id).where(Alarm.id.in_(alarm_ids))))
    return shown


@router.get("/", name="overview")
def overview_page(
    request: Request,
    user: WebUserDep,
    session: SessionDep,
    clock: ClockDep,
    tz: TimezoneDep,
    t: TranslatorDep,
    templates: TemplatesDep,
) -> HTMLResponse:
    """The whole page; its live part refreshes itself from ``overview_partial``."""
    overview = _load(session, clock, tz, user)
    residents = _shown_residents(session, overview)
    audit_many(
        session,
        request=request,
        user=user,
        action=AUDIT_ACTION,
        now=clock.now(),
        resident_ids=residents,
        detail={"view": "page"},
    )
    session.commit()
    _audited(request).reset(request.state.web_session.id, residents)
    return render(
        templates,
        request,
        "overview.html",
        t,
        {
            "overview": overview,
            "poll_interval_s": OVERVIEW_POLL_INTERVAL_S,
            "show_care_details": sees_care_details(user),
        },
    )


@router.get("/partials/overview", name="overview_partial")
def overview_partial(
    request: Request,
    user: WebUserDep,
    session: SessionDep,
    clock: ClockDep,
    tz: TimezoneDep,
    t: TranslatorDep,
    templates: TemplatesDep,
) -> HTMLResponse:
    """The live part of the overview, for htmx to swap in every few seconds."""
    overview = _load(session, clock, tz, user)
    memory = _audited(request)
    session_id: int = request.state.web_session.id
    fresh = memory.unseen(session_id, _shown_residents(session, overview))
    if fresh:
        audit_many(
            session,
            request=request,
            user=user,
            action=AUDIT_ACTION,
            now=clock.now(),
            resident_ids=fresh,
            detail={"view": "refresh"},
        )
        session.commit()
        memory.mark(session_id, fresh)
    return render(
        templates,
        request,
        "partials/overview.html",
        t,
        {"overview": overview, "show_care_details": sees_care_details(user)},
    )
