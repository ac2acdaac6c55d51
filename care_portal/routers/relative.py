"""``GET /r/{token}``: a relative's signed, expiring view of one alarm's state, and nothing more."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, status
from fastapi.responses import HTMLResponse

from care_portal.const import LANG_QUERY_PARAM
from care_portal.deps import ClockDep, SessionDep, SettingsDep, TemplatesDep, TimezoneDep
from care_portal.i18n import Language, Translator, is_language
from care_portal.templating import render
from care_portal.web_session import audit
from hub.config import Settings
from hub.relative_links import verify_relative_link
from hub.storage.models import Alarm, AlarmStatus, Relative

logger = logging.getLogger(__name__)

router = APIRouter(tags=["relative"], default_response_class=HTMLResponse)

# The page must not leak its own address (the token) to other sites, nor be indexed or cached.
_HEADERS = {
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
    "Cache-Control": "no-store",
}
# What a relative reads for each alarm status: the service's progress, never the alarm itself.
_STATE_KEYS = {
    AlarmStatus.OPEN: "relative.state.received",
    AlarmStatus.NOTIFIED: "relative.state.received",
    AlarmStatus.ACKNOWLEDGED: "relative.state.taken",
    AlarmStatus.ON_SITE: "relative.state.on_site",
    AlarmStatus.RESOLVED: "relative.state.closed",
    AlarmStatus.CANCELLED: "relative.state.closed",
}


def warn_if_unconfigured(settings: Settings) -> None:
    """At start: without ``security.link_secret`` relatives' links are switched off."""
    if not settings.security.link_secret:
        logger.warning(
            "security.link_secret is not set: relative links (/r/...) answer 404 "
            "(set CAREHUB_SECURITY__LINK_SECRET to turn them on)"
        )


def _translator(request: Request, language: str) -> Translator:
    catalogues: dict[Language, dict[str, str]] = request.app.state.catalogues
    chosen = request.query_params.get(LANG_QUERY_PARAM)
    lang: Language = chosen if is_language(chosen) else language if is_language(language) else "nb"
    return Translator(lang, catalogues[lang])


@router.get("/r/{token}", name="relative_link")
def relative_page(
    token: str,
    request: Request,
    session: SessionDep,
    clock: ClockDep,
    tz: TimezoneDep,
    settings: SettingsDep,
    templates: TemplatesDep,
) -> HTMLResponse:
    """No login: a genuine, unexpired link shows the alarm's state in plain words."""
    now = clock.now()
    secret = settings.security.link_secret
    found = verify_relative_link(token, now=now, secret=secret) if secret else None
    alarm = session.get(Alarm, found[0]) if found else None
    relative = session.get(Relative, found[1]) if found else None
    if alarm is None or relative is None or relative.resident_id != alarm.resident_id:
        t = _translator(request, settings.portal.default_language)
        response = render(templates, request, "relative.html", t, {"state": None}, status_code=404)
        response.headers.update(_HEADERS)
        return response
    t = _translator(request, relative.language)
    audit(
        session,
        request=request,
        user=None,
        action="relative_link.read",
        now=now,
        resident_id=alarm.resident_id,
        detail={"alarm_id": alarm.id, "relative_id": relative.id},
    )
    session.commit()
    response = render(
        templates,
        request,
        "relative.html",
        t,
        {
            "state": t(_STATE_KEYS[AlarmStatus(alarm.status)]),
            "closed": alarm.status in (AlarmStatus.RESOLVED, AlarmStatus.CANCELLED),
            "updated": t.format_time(alarm.updated_at.astimezone(tz)),
        },
        status_code=status.HTTP_200_OK,
    )
    response.headers.update(_HEADERS)
    return response


__all__ = ["router", "warn_if_unconfigured"]
