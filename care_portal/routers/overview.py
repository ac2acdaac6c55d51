"""The overview page: homes and their devices, the latest events and the message intake."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from care_portal.const import OVERVIEW_POLL_INTERVAL_S
from care_portal.deps import ClockDep, SessionDep, TemplatesDep, TimezoneDep, TranslatorDep
from care_portal.queries.overview import load_overview
from care_portal.templating import render

router = APIRouter(tags=["overview"], default_response_class=HTMLResponse)


@router.get("/", name="overview")
def overview_page(
    request: Request,
    session: SessionDep,
    clock: ClockDep,
    tz: TimezoneDep,
    t: TranslatorDep,
    templates: TemplatesDep,
) -> HTMLResponse:
    """The whole page; its live part refreshes itself from ``overview_partial``."""
    overview = load_overview(session, now=clock.now(), tz=tz)
    return render(
        templates,
        request,
        "overview.html",
        t,
        {"overview": overview, "poll_interval_s": OVERVIEW_POLL_INTERVAL_S},
    )


@router.get("/partials/overview", name="overview_partial")
def overview_partial(
    request: Request,
    session: SessionDep,
    clock: ClockDep,
    tz: TimezoneDep,
    t: TranslatorDep,
    templates: TemplatesDep,
) -> HTMLResponse:
    """The live part of the overview, for htmx to swap in every few seconds."""
    overview = load_overview(session, now=clock.now(), tz=tz)
    return render(templates, request, "partials/overview.html", t, {"overview": overview})
