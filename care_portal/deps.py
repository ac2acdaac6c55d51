"""FastAPI dependencies of the portal, as ``Annotated`` aliases routes declare by type."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.orm import Session, sessionmaker
from starlette.templating import Jinja2Templates

from care_portal.auth import user_for_token
from care_portal.const import API_TOKEN_URL
from care_portal.i18n import Language, Translator, request_language
from hub.clock import Clock
from hub.config import Settings
from hub.storage.models import StaffRole, StaffUser

oauth2_scheme = OAuth2PasswordBearer(tokenUrl=API_TOKEN_URL)


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_session(request: Request) -> Iterator[Session]:
    """A session for one request, closed when the response is done."""
    factory: sessionmaker[Session] = request.app.state.session_factory
    with factory() as session:
        yield session


def get_clock(request: Request) -> Clock:
    clock: Clock = request.app.state.clock
    return clock


def get_timezone(request: Request) -> ZoneInfo:
    """The municipality's time zone, in which times of day are shown."""
    timezone: ZoneInfo = request.app.state.timezone
    return timezone


def get_ingest_status(request: Request) -> Callable[[], str] | None:
    """The MQTT ingest's status reporter, when the ingest runs in this process."""
    ingest_status: Callable[[], str] | None = request.app.state.ingest_status
    return ingest_status


def get_templates(request: Request) -> Jinja2Templates:
    templates: Jinja2Templates = request.app.state.templates
    return templates


SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_language(request: Request, settings: SettingsDep) -> Language:
    """``?lang=``, else the remembered cookie, else Accept-Language, else the default."""
    return request_language(request, settings.portal.default_language)


LangDep = Annotated[Language, Depends(get_language)]


def get_translator(request: Request, language: LangDep) -> Translator:
    catalogues: dict[Language, dict[str, str]] = request.app.state.catalogues
    return Translator(language, catalogues[language])


SessionDep = Annotated[Session, Depends(get_session)]
ClockDep = Annotated[Clock, Depends(get_clock)]
TimezoneDep = Annotated[ZoneInfo, Depends(get_timezone)]
IngestStatusDep = Annotated[Callable[[], str] | None, Depends(get_ingest_status)]
TemplatesDep = Annotated[Jinja2Templates, Depends(get_templates)]
TranslatorDep = Annotated[Translator, Depends(get_translator)]


def get_alarm_changed_hook(request: Request) -> Callable[[int], None] | None:
    """Called with an alarm's id after the API changed it (the hub publishes its feedback)."""
    hook: Callable[[int], None] | None = request.app.state.on_alarm_changed
    return hook


AlarmChangedHookDep = Annotated[Callable[[int], None] | None, Depends(get_alarm_changed_hook)]
TokenDep = Annotated[str, Depends(oauth2_scheme)]


def get_current_user(session: SessionDep, clock: ClockDep, token: TokenDep) -> StaffUser:
    """The active staff user of the request's bearer token; 401 when it is unknown, expired or
    revoked."""
    user = user_for_token(session, token, now=clock.now())
    if user is None:
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="The token is invalid, expired or revoked; log in again.",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    return user


CurrentUser = Annotated[StaffUser, Depends(get_current_user)]


def get_care_staff(user: CurrentUser) -> StaffUser:
    """A user who may read and handle alarms and residents: everyone but installers (403)."""
    if user.role is StaffRole.INSTALLER:
        raise HTTPException(
            status_code=status.HTTP_403_FORBIDDEN,
            detail="Installers see homes and devices only, not alarms or residents.",
        )
    return user


CareStaffUser = Annotated[StaffUser, Depends(get_care_staff)]
