"""The care portal's app factory: settings, database, clock and routers wired into one FastAPI."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import FastAPI, Request, status
from fastapi.exception_handlers import http_exception_handler
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import RedirectResponse, Response

from care_portal.const import STATIC_DIR
from care_portal.i18n import Translator, load_catalogues, remember_language_choice, request_language
from care_portal.routers import (
    api_alarms,
    api_auth,
    api_devices,
    api_residents,
    audit,
    board,
    events,
    health,
    installer,
    overview,
    relative,
    reports,
    residents,
    roster,
    twilio_hooks,
    web_auth,
)
from care_portal.templating import make_templates, render
from care_portal.web_session import LoginRequired, csrf_token
from hub.clock import Clock, SystemClock
from hub.config import Settings
from hub.storage.crypto import configure_keys
from hub.storage.db import make_engine, make_sessionmaker

logger = logging.getLogger(__name__)


def create_app(
    settings: Settings,
    *,
    session_factory: sessionmaker[Session] | None = None,
    clock: Clock | None = None,
    ingest_status: Callable[[], str] | None = None,
    on_alarm_changed: Callable[[int], None] | None = None,
    on_outbox: Callable[[], None] | None = None,
) -> FastAPI:
    """Build the portal. Without ``session_factory`` it opens ``settings.database.url`` itself.

    ``ingest_status`` reports the MQTT ingest's state when the ingest runs in this process;
    ``on_alarm_changed(alarm_id)`` is called after the API committed a change to an alarm (the hub
    publishes the home's feedback topic from it); ``on_outbox()`` after a commit that may have
    queued outgoing messages (an SMS reply took an alarm), so the sender need not wait for its tick.
    """
    configure_keys(settings.security.data_keys)
    owned_engine: Engine | None = None
    if session_factory is None:
        owned_engine = make_engine(settings.database.url, echo=settings.database.echo)
        session_factory = make_sessionmaker(owned_engine)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        if owned_engine is not None:
            owned_engine.dispose()

    app = FastAPI(title="CareHub care portal", version="1", lifespan=lifespan)
    app.state.settings = settings
    app.state.session_factory = session_factory
    app.state.clock = clock if clock is not None else SystemClock()
    app.state.ingest_status = ingest_status
    app.state.on_alarm_changed = on_alarm_changed
    app.state.on_outbox = on_outbox
    app.state.timezone = ZoneInfo(settings.timezone)
    app.state.catalogues = load_catalogues()
    app.state.templates = make_templates()

    app.middleware("http")(remember_language_choice)
    app.add_exception_handler(OperationalError, _database_unavailable)
    app.add_exception_handler(LoginRequired, _login_required)
    app.add_exception_handler(StarletteHTTPException, _http_error_page)
    app.state.templates.env.globals["csrf_token"] = csrf_token
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(health.router)
    app.include_router(overview.router)
    app.include_router(web_auth.router)
    app.include_router(api_auth.router)
    app.include_router(api_alarms.router)
    app.include_router(api_residents.router)
    app.include_router(api_devices.router)
    app.include_router(twilio_hooks.router)
    app.include_router(board.router)
    app.include_router(events.router)
    app.include_router(relative.router)
    app.include_router(residents.router)
    app.include_router(roster.router)
    app.include_router(reports.router)
    app.include_router(audit.router)
    app.include_router(installer.router)
    broker_sync = installer.broker_sync_from(settings)
    if broker_sync is not None:
        setattr(app.state, installer.BROKER_AUTH_STATE, broker_sync)
    relative.warn_if_unconfigured(settings)
    return app


_PAGE_ERRORS = {
    status.HTTP_403_FORBIDDEN: ("error.forbidden_title", "error.forbidden"),
    status.HTTP_404_NOT_FOUND: ("error.not_found_title", "error.not_found"),
}


async def _http_error_page(request: Request, exc: Exception) -> Response:
    """403 and 404 on pages: a translated page with the navigation; the API keeps its JSON."""
    assert isinstance(exc, StarletteHTTPException)
    keys = _PAGE_ERRORS.get(exc.status_code)
    wants_html = "text/html" in request.headers.get("accept", "")
    if keys is None or request.url.path.startswith("/api/") or not wants_html:
        return await http_exception_handler(request, exc)
    settings: Settings = request.app.state.settings
    language = request_language(request, settings.portal.default_language)
    t = Translator(language, request.app.state.catalogues[language])
    return render(
        request.app.state.templates,
        request,
        "error.html",
        t,
        {"title": t(keys[0]), "message": t(keys[1])},
        status_code=exc.status_code,
    )


async def _login_required(request: Request, exc: Exception) -> Response:
    """No valid session: to the sign-in page (htmx requests get an HX-Redirect header)."""
    next_url = exc.next_url if isinstance(exc, LoginRequired) else "/"
    target = "/login?" + urlencode({"next": next_url})
    if request.headers.get("HX-Request"):
        return Response(status_code=status.HTTP_204_NO_CONTENT, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=status.HTTP_303_SEE_OTHER)


async def _database_unavailable(request: Request, exc: Exception) -> Response:
    """A page that needs the database while it is away: 503 and a message a person can read."""
    logger.error("database unavailable while serving %s", request.url.path, exc_info=exc)
    settings: Settings = request.app.state.settings
    language = request_language(request, settings.portal.default_language)
    t = Translator(language, request.app.state.catalogues[language])
    return render(
        request.app.state.templates,
        request,
        "error.html",
        t,
        {"message": t("error.database")},
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
    )
