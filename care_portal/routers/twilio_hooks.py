"""``/api/v1/twilio``: Twilio's signed webhooks: inbound SMS, delivery receipts, voice TwiML."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Annotated, Final

from fastapi import APIRouter, Depends, HTTPException, Request, status
from sqlalchemy.orm import Session
from starlette.responses import Response
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from care_portal.const import API_PREFIX
from care_portal.deps import ClockDep, SessionDep, SettingsDep
from hub.clock import Clock
from hub.notify import replies

logger = logging.getLogger(__name__)

PREFIX: Final = f"{API_PREFIX}/twilio"
SIGNATURE_HEADER: Final = "X-Twilio-Signature"
TWIML_MEDIA_TYPE: Final = "application/xml"

router = APIRouter(prefix=PREFIX, tags=["twilio"])

_FORBIDDEN: Final = "The request is not signed by the SMS provider (X-Twilio-Signature)."


def public_url(base_url: str, request: Request) -> str:
    """The URL the provider called (and signed): the configured public base URL plus the path
    and query this app saw. ``request.url`` is not it behind a proxy or a TLS terminator."""
    url = base_url.rstrip("/") + request.url.path
    if request.url.query:
        url += "?" + request.url.query
    return url


async def signed_form(request: Request, settings: SettingsDep) -> dict[str, str]:
    """The webhook's form fields, once ``X-Twilio-Signature`` is valid for the public URL;
    403 (and a warning in the log) otherwise, before anything is read from the database."""
    form = await request.form()
    params = {key: value for key, value in form.items() if isinstance(value, str)}
    signature = request.headers.get(SIGNATURE_HEADER, "")
    url = public_url(settings.portal.public_base_url, request)
    validator = RequestValidator(settings.twilio.auth_token)
    if not signature or not validator.validate(url, params, signature):
        logger.warning(
            "refused %s %s: %s signature for %s (from %s)",
            request.method,
            request.url.path,
            "invalid" if signature else "no",
            url,
            request.client.host if request.client else "?",
        )
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=_FORBIDDEN)
    return params


SignedForm = Annotated[dict[str, str], Depends(signed_form)]


class Hooks:
    """The app's optional listeners, called after a commit; a failing one is only logged."""

    def __init__(self, request: Request) -> None:
        self._alarm_changed: Callable[[int], None] | None = request.app.state.on_alarm_changed
        self._outbox: Callable[[], None] | None = request.app.state.on_outbox

    def alarms_changed(self, alarm_ids: Iterable[int]) -> None:
        if self._alarm_changed is None:
            return
        for alarm_id in dict.fromkeys(alarm_ids):
            try:
                self._alarm_changed(alarm_id)
            except Exception:  # committed already: a listener must not turn it into a 500
                logger.exception("on_alarm_changed hook failed for alarm %d", alarm_id)

    def outbox(self) -> None:
        if self._outbox is None:
            return
        try:
            self._outbox()
        except Exception:  # the outbox rows are committed; the sender's own tick finds them
            logger.exception("on_outbox hook failed")


HooksDep = Annotated[Hooks, Depends(Hooks)]


def _twiml(text: str) -> Response:
    return Response(text, media_type=TWIML_MEDIA_TYPE)


@router.post("/sms", response_class=Response)
def inbound_sms(
    form: SignedForm, session: SessionDep, clock: ClockDep, hooks: HooksDep
) -> Response:
    """An SMS to the hub's number: "1" / "1 <code>" takes an alarm, STOP/START for relatives.
    Answers TwiML with the reply SMS (or an empty ``<Response/>``)."""
    from_number = form.get("From", "")
    if not from_number:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail="From is missing")
    result = replies.handle_inbound_sms(
        session, from_number=from_number, body=form.get("Body", ""), now=clock.now()
    )
    session.commit()
    logger.info("inbound SMS %s: %s", form.get("MessageSid", "?"), result.result)
    hooks.alarms_changed(result.changed_alarm_ids)
    if result.taken_alarm_id is not None:
        hooks.outbox()
    response = MessagingResponse()
    if result.reply_text:
        response.message(result.reply_text)
    return _twiml(str(response.to_xml()))


@router.post("/status", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
def status_callback(
    form: SignedForm, session: SessionDep, clock: ClockDep, hooks: HooksDep
) -> Response:
    """A delivery receipt for an SMS (``MessageSid``/``MessageStatus``) or a call
    (``CallSid``/``CallStatus``), matched by its sid: the URL the sender gave before
    2026-11-25. An unknown sid is logged and answered 204 all the same.

    A receipt changes a notification, never its alarm: nothing is stopped and the home's
    feedback stays as it is, so the alarm-changed hook is not called (each receipt would cost
    the hub two more reads and an MQTT publish, twice per SMS). A failed or undelivered one wakes
    the sender, whose fallback (a voice call) may now be due."""
    return _receipt(form, session, clock, hooks, None)


@router.post(
    "/status/{notification_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response
)
def notification_status_callback(
    notification_id: int, form: SignedForm, session: SessionDep, clock: ClockDep, hooks: HooksDep
) -> Response:
    """A delivery receipt for the notification the URL names (the sender's URL since
    2026-11-25): it counts even when it comes before the sender recorded the provider's sid.
    Otherwise as ``/status``."""
    return _receipt(form, session, clock, hooks, notification_id)


def _receipt(
    form: Mapping[str, str],
    session: Session,
    clock: Clock,
    hooks: Hooks,
    notification_id: int | None,
) -> Response:
    sid = form.get("MessageSid") or form.get("SmsSid") or form.get("CallSid")
    provider_status = form.get("MessageStatus") or form.get("SmsStatus") or form.get("CallStatus")
    if not sid or not provider_status:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            detail="A status callback needs MessageSid and MessageStatus, or CallSid and "
            "CallStatus",
        )
    result = replies.apply_status(
        session,
        sid=sid,
        status=provider_status,
        error_code=form.get("ErrorCode") or None,
        now=clock.now(),
        notification_id=notification_id,
    )
    session.commit()
    if (
        result is not None
        and result.changed
        and result.notification_status in replies.FAILED_STATUSES
    ):
        hooks.outbox()  # a fallback (voice call) may be due: wake the sender
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/voice/{notification_id}", response_class=Response)
def voice(
    notification_id: int,
    form: SignedForm,
    request: Request,
    session: SessionDep,
    clock: ClockDep,
    settings: SettingsDep,
) -> Response:
    """The TwiML of an alarm call: the alarm read out and "press 1 to take the alarm"."""
    base = settings.portal.public_base_url.rstrip("/")
    gather_url = f"{base}{request.url.path.rstrip('/')}/gather"
    twiml = replies.voice_twiml(session, notification_id, now=clock.now(), gather_url=gather_url)
    session.commit()
    return _twiml(twiml)


@router.post("/voice/{notification_id}/gather", response_class=Response)
def voice_gather(
    notification_id: int,
    form: SignedForm,
    session: SessionDep,
    clock: ClockDep,
    hooks: HooksDep,
) -> Response:
    """The key pressed in an alarm call: 1 takes the alarm."""
    outcome = replies.voice_keypress(
        session, notification_id, digits=form.get("Digits", ""), now=clock.now()
    )
    session.commit()
    if outcome.alarm_id is not None:
        hooks.alarms_changed([outcome.alarm_id])
    if outcome.result == replies.RESULT_TAKEN:
        hooks.outbox()
    return _twiml(outcome.twiml)
