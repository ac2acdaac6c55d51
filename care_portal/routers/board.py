"""The nurses' alarm board and alarm page: take, on-site and resolve with one tap each."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Annotated, Final, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Form, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session
from starlette.templating import Jinja2Templates

from care_portal.const import API_NOTE_MAX_CHARS
from care_portal.deps import (
    AlarmChangedHookDep,
    ClockDep,
    SessionDep,
    TemplatesDep,
    TimezoneDep,
    TranslatorDep,
)
from care_portal.i18n import Translator
from care_portal.queries.board import load_alarm_page, load_board, recently_audited
from care_portal.templating import render
from care_portal.web_session import CsrfDep, audit, audit_many, require_roles
from hub.alarms import service
from hub.alarms.lifecycle import FINAL_STATUSES, UNTAKEN_STATUSES, TransitionError
from hub.alarms.service import AlarmNotFound
from hub.clock import Clock
from hub.storage.models import AlarmStatus, StaffRole, StaffUser

logger = logging.getLogger(__name__)

router = APIRouter(tags=["board"], default_response_class=HTMLResponse)

BOARD_ROLES: Final = (StaffRole.NURSE, StaffRole.COORDINATOR, StaffRole.ADMIN)
BoardUser = Annotated[StaffUser, Depends(require_roles(*BOARD_ROLES))]
# How often the board asks for a fresh fragment when no live event came (SSE fallback).
BOARD_POLL_INTERVAL_S: Final = 10
# A self-refreshing board logs a resident's "seen on the board" at most once per this period.
BOARD_AUDIT_QUIET: Final = timedelta(minutes=5)

Back = Literal["board", "alarm"]
_ACTIONS: Final[dict[AlarmStatus, str]] = {
    AlarmStatus.ACKNOWLEDGED: "alarm.acknowledge",
    AlarmStatus.ON_SITE: "alarm.on_site",
    AlarmStatus.RESOLVED: "alarm.resolve",
}


def actor_of(user: StaffUser) -> str:
    """How a staff user is named in an alarm's timeline."""
    return f"user:{user.username}"


def _is_htmx(request: Request) -> bool:
    return request.headers.get("HX-Request") == "true"


def _board_context(
    request: Request,
    session: Session,
    clock: Clock,
    tz: ZoneInfo,
    user: StaffUser,
    *,
    error: str | None = None,
    thin_audit: bool = False,
) -> dict[str, object]:
    """The board as of now, with its audit entries (thinned out for automatic refreshes)."""
    now = clock.now()
    board = load_board(session, now=now, tz=tz)
    residents = {alarm.resident_id for alarm in board.alarms}
    if thin_audit:
        residents -= recently_audited(
            session,
            user_id=user.id,
            action="alarm.board.read",
            resident_ids=residents,
            since=now - BOARD_AUDIT_QUIET,
        )
    audit_many(
        session,
        request=request,
        user=user,
        action="alarm.board.read",
        now=now,
        resident_ids=residents,
    )
    session.commit()
    return {"board": board, "error": error, "poll_interval_s": BOARD_POLL_INTERVAL_S}


@router.get("/board", name="board")
def board_page(
    request: Request,
    session: SessionDep,
    clock: ClockDep,
    tz: TimezoneDep,
    t: TranslatorDep,
    templates: TemplatesDep,
    user: BoardUser,
) -> HTMLResponse:
    """The whole board; its live part refreshes on the ``alarms`` event (and every 10 s)."""
    context = _board_context(request, session, clock, tz, user)
    return render(templates, request, "board.html", t, context)


@router.get("/partials/board", name="board_partial")
def board_partial(
    request: Request,
    session: SessionDep,
    clock: ClockDep,
    tz: TimezoneDep,
    t: TranslatorDep,
    templates: TemplatesDep,
    user: BoardUser,
) -> HTMLResponse:
    """The live part of the board, for htmx to swap in."""
    context = _board_context(request, session, clock, tz, user, thin_audit=True)
    return render(templates, request, "partials/board.html", t, context)


@router.get("/alarms/{alarm_id}", name="alarm_page")
def alarm_page(
    alarm_id: int,
    request: Request,
    session: SessionDep,
    clock: ClockDep,
    tz: TimezoneDep,
    t: TranslatorDep,
    templates: TemplatesDep,
    user: BoardUser,
) -> HTMLResponse:
    """One alarm with its whole timeline, its notifications and the same actions."""
    return _render_alarm(request, session, clock, tz, t, templates, user, alarm_id)


@router.post("/alarms/{alarm_id}/take", name="alarm_take")
def take_alarm(
    alarm_id: int,
    request: Request,
    session: SessionDep,
    clock: ClockDep,
    tz: TimezoneDep,
    t: TranslatorDep,
    templates: TemplatesDep,
    user: BoardUser,
    on_changed: AlarmChangedHookDep,
    _csrf: CsrfDep,
    back: Annotated[Back, Form()] = "board",
) -> Response:
    """ "Ta alarmen": the user is now responsible for the alarm."""
    move = _Move(request, session, clock, tz, t, templates, user, on_changed)
    return move(alarm_id, AlarmStatus.ACKNOWLEDGED, back=back)


@router.post("/alarms/{alarm_id}/on-site", name="alarm_on_site")
def register_on_site(
    alarm_id: int,
    request: Request,
    session: SessionDep,
    clock: ClockDep,
    tz: TimezoneDep,
    t: TranslatorDep,
    templates: TemplatesDep,
    user: BoardUser,
    on_changed: AlarmChangedHookDep,
    _csrf: CsrfDep,
    back: Annotated[Back, Form()] = "board",
) -> Response:
    """ "Fremme": presence registered at the resident's home."""
    move = _Move(request, session, clock, tz, t, templates, user, on_changed)
    return move(alarm_id, AlarmStatus.ON_SITE, back=back)


@router.post("/alarms/{alarm_id}/resolve", name="alarm_resolve")
def resolve_alarm(
    alarm_id: int,
    request: Request,
    session: SessionDep,
    clock: ClockDep,
    tz: TimezoneDep,
    t: TranslatorDep,
    templates: TemplatesDep,
    user: BoardUser,
    on_changed: AlarmChangedHookDep,
    _csrf: CsrfDep,
    outcome: Annotated[str, Form()] = "",
    note: Annotated[str, Form()] = "",
    back: Annotated[Back, Form()] = "board",
) -> Response:
    """Close the alarm with an outcome and an optional note."""
    move = _Move(request, session, clock, tz, t, templates, user, on_changed)
    text = note.strip()[:API_NOTE_MAX_CHARS] or None
    return move(alarm_id, AlarmStatus.RESOLVED, outcome=outcome or None, note=text, back=back)


class _Move:
    """One transition from a form: commit, audit and hook, or the page again with the reason."""

    def __init__(
        self,
        request: Request,
        session: Session,
        clock: Clock,
        tz: ZoneInfo,
        t: Translator,
        templates: Jinja2Templates,
        user: StaffUser,
        on_changed: Callable[[int], None] | None,
    ) -> None:
        self.request = request
        self.session = session
        self.clock = clock
        self.tz = tz
        self.t = t
        self.templates = templates
        self.user = user
        self.on_changed = on_changed

    def __call__(
        self,
        alarm_id: int,
        to: AlarmStatus,
        *,
        back: Back,
        outcome: str | None = None,
        note: str | None = None,
    ) -> Response:
        now = self.clock.now()
        try:
            alarm = service.transition(
                self.session,
                alarm_id,
                to=to,
                actor=actor_of(self.user),
                now=now,
                outcome=outcome,
                note=note,
            )
        except AlarmNotFound:
            self.session.rollback()
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such alarm") from None
        except TransitionError as exc:
            self.session.rollback()
            logger.info("%s refused on alarm %d: %s", actor_of(self.user), alarm_id, exc)
            return self._again(alarm_id, back, transition_message(self.t, exc))
        audit(
            self.session,
            request=self.request,
            user=self.user,
            action=_ACTIONS[to],
            now=now,
            resident_id=alarm.resident_id,
            detail={"alarm_id": alarm_id, "outcome": outcome},
        )
        self.session.commit()
        if self.on_changed is not None:
            try:
                self.on_changed(alarm_id)
            except Exception:  # committed already: a failing listener must not undo the answer
                logger.exception("on_alarm_changed hook failed for alarm %d", alarm_id)
        if _is_htmx(self.request) and back == "board":
            return self._board(None, status.HTTP_200_OK)
        target = "/board" if back == "board" else f"/alarms/{alarm_id}"
        return RedirectResponse(target, status_code=status.HTTP_303_SEE_OTHER)

    def _again(self, alarm_id: int, back: Back, message: str) -> Response:
        if back == "alarm":
            return _render_alarm(
                self.request,
                self.session,
                self.clock,
                self.tz,
                self.t,
                self.templates,
                self.user,
                alarm_id,
                error=message,
                status_code=status.HTTP_409_CONFLICT,
            )
        return self._board(message, status.HTTP_409_CONFLICT)

    def _board(self, error: str | None, status_code: int) -> Response:
        htmx = _is_htmx(self.request)
        context = _board_context(
            self.request, self.session, self.clock, self.tz, self.user, error=error, thin_audit=htmx
        )
        name = "partials/board.html" if htmx else "board.html"
        return render(self.templates, self.request, name, self.t, context, status_code=status_code)


def _render_alarm(
    request: Request,
    session: Session,
    clock: Clock,
    tz: ZoneInfo,
    t: Translator,
    templates: Jinja2Templates,
    user: StaffUser,
    alarm_id: int,
    *,
    error: str | None = None,
    status_code: int = status.HTTP_200_OK,
) -> HTMLResponse:
    now = clock.now()
    page = load_alarm_page(session, alarm_id, now=now, tz=tz)
    if page is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such alarm")
    audit(
        session,
        request=request,
        user=user,
        action="alarm.read",
        now=now,
        resident_id=page.alarm.resident_id,
        detail={"alarm_id": alarm_id},
    )
    session.commit()
    return render(
        templates,
        request,
        "alarm.html",
        t,
        {"page": page, "alarm": page.alarm, "error": error},
        status_code=status_code,
    )


def transition_message(t: Translator, exc: TransitionError) -> str:
    """Why the lifecycle refused, in words a nurse on the road reads at a glance."""
    current, target = AlarmStatus(exc.current), AlarmStatus(exc.target)
    current_text = t("alarm_status." + current.value)
    if current in FINAL_STATUSES:
        return t("board.error.final", status=current_text)
    if target is AlarmStatus.ACKNOWLEDGED:
        return t("board.error.already_taken", status=current_text)
    if target is AlarmStatus.ON_SITE:
        if current in UNTAKEN_STATUSES:
            return t("board.error.take_first")
        return t("board.error.already_on_site")
    if target is AlarmStatus.RESOLVED:
        if "needs an outcome" in str(exc) or "unknown outcome" in str(exc):
            return t("board.error.outcome_missing")
        if current in UNTAKEN_STATUSES:
            return t("board.error.resolve_untaken")
    return t("board.error.generic", detail=str(exc))


__all__ = ["BOARD_ROLES", "BoardUser", "actor_of", "router", "transition_message"]
