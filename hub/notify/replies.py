"""What comes back from the provider: SMS replies that take alarms, delivery receipts, voice."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal

from sqlalchemy import select, update
from sqlalchemy.orm import Session
from twilio.twiml.voice_response import VoiceResponse

from hub.alarms import service as alarms
from hub.alarms.lifecycle import UNTAKEN_STATUSES, TransitionError
from hub.escalation import engine
from hub.notify.texts import VOICE_LANGUAGES, language_of, render, type_label
from hub.storage.crypto import phone_index_candidates
from hub.storage.models import (
    Alarm,
    AlarmStatus,
    AlarmTimelineEntry,
    Notification,
    Relative,
    RelativeRole,
    Resident,
    StaffUser,
)

logger = logging.getLogger(__name__)

PersonKind = Literal["staff", "relative"]

# Timeline kinds and the actor of delivery receipts.
KIND_REPLY: Final = "reply"
KIND_DELIVERY: Final = "delivery"
PROVIDER_ACTOR: Final = "twilio"

# Result codes of an inbound reply, kept in the timeline entry's ``detail.result``.
RESULT_TAKEN: Final = "taken"
RESULT_ALREADY_TAKEN: Final = "already_taken"
RESULT_CHOOSE_CODE: Final = "choose_code"
RESULT_NO_OPEN_ALARM: Final = "no_open_alarm"
RESULT_NOT_ACTING: Final = "not_acting"
RESULT_HELP: Final = "help"
RESULT_STOP: Final = "stop"
RESULT_START: Final = "start"
RESULT_CANCELLED: Final = "cancelled"
RESULT_UNKNOWN_NUMBER: Final = "unknown_number"

STOP_WORDS: Final = frozenset({"STOP", "STOPP"})
START_WORDS: Final = frozenset({"START"})
# "1", "1 AB12", "1AB12" (trailing "." or "!" forgiven).
_TAKE_RE: Final = re.compile(r"^1\s*([A-Z0-9]{1,8})?$")
_TAKEN_STATUSES: Final = (AlarmStatus.ACKNOWLEDGED, AlarmStatus.ON_SITE, AlarmStatus.RESOLVED)
_BODY_MAX_CHARS: Final = 320

# Notification statuses: once final, a late callback never changes them.
NOTIFICATION_FINAL: Final = frozenset({"delivered", "failed", "undelivered", "cancelled"})
_RANK: Final = {"queued": 0, "sending": 1, "sent": 2}
# Twilio's message statuses → a notification's status.
SMS_STATUS_MAP: Final = {
    "accepted": "sent",
    "scheduled": "sent",
    "queued": "sent",
    "sending": "sent",
    "sent": "sent",
    "delivered": "delivered",
    "read": "delivered",
    "undelivered": "undelivered",
    "failed": "failed",
    "canceled": "failed",
}
# Twilio's call statuses → a notification's status ("completed": someone answered).
VOICE_STATUS_MAP: Final = {
    "queued": "sent",
    "initiated": "sent",
    "ringing": "sent",
    "in-progress": "sent",
    "answered": "sent",
    "completed": "delivered",
    "busy": "failed",
    "no-answer": "failed",
    "canceled": "failed",
    "failed": "failed",
}
# Statuses after which the outbox may want a fallback (the sender decides): wake it.
FAILED_STATUSES: Final = frozenset({"failed", "undelivered"})

GATHER_TIMEOUT_S: Final = 8


@dataclass(frozen=True)
class InboundResult:
    """What the hub answers an inbound SMS, and what it changed."""

    reply_text: str | None
    taken_alarm_id: int | None
    language: str
    # Alarms whose timeline got an entry (the taken one among them).
    changed_alarm_ids: tuple[int, ...] = ()
    result: str = RESULT_HELP


@dataclass(frozen=True)
class StatusResult:
    """What a delivery receipt changed (``apply_status_callback`` returns only the alarm id)."""

    alarm_id: int
    notification_status: str
    changed: bool


@dataclass
class _Person:
    """Whoever texted or was called: one staff account, or one or more relative rows
    (the same person may be a relative of several residents)."""

    kind: PersonKind
    name: str
    language: str
    ids: tuple[int, ...]
    # The ids that may take an alarm: the staff account; acting relative rows only.
    acting_ids: tuple[int, ...]
    relatives: list[Relative] = field(default_factory=list)


# ---- inbound SMS -------------------------------------------------------------------------------


def handle_inbound_sms(
    session: Session, *, from_number: str, body: str, now: datetime
) -> InboundResult:
    """Act on an SMS to the hub: take an alarm ("1", "1 <code>"), STOP/START, or help.

    Never commits. Every reply that concerns an alarm is appended to its timeline.
    """
    person = find_person(session, from_number)
    if person is None:
        logger.warning("SMS from unknown number %s", _mask(from_number))
        language = _language_for_unknown(from_number)
        reply = render("reply.unknown_number", language)
        return InboundResult(reply, None, language, (), RESULT_UNKNOWN_NUMBER)
    decision = _decide(session, person, _normalise_body(body), now=now)
    for alarm in decision.involved:
        alarms.add_note(
            session,
            alarm.id,
            now=now,
            actor=f"sms:{person.name}",
            kind=KIND_REPLY,
            detail=_reply_detail(
                person, from_number, body, decision.result, alarm is decision.taken
            ),
        )
    return InboundResult(
        reply_text=decision.reply,
        taken_alarm_id=decision.taken.id if decision.taken is not None else None,
        language=person.language,
        changed_alarm_ids=tuple(a.id for a in decision.involved),
        result=decision.result,
    )


@dataclass(frozen=True)
class _Decision:
    result: str
    reply: str
    involved: Sequence[Alarm] = ()
    taken: Alarm | None = None


def _decide(session: Session, person: _Person, text: str, *, now: datetime) -> _Decision:
    """What an SMS from a known person does; changes only what the decision says."""
    language = person.language

    def untaken_notified() -> list[Alarm]:
        return _notified_alarms(session, person, person.ids, untaken=True)

    def choose(candidates: Sequence[Alarm]) -> _Decision:
        codes = _codes(session, candidates)
        reply = render("reply.choose_code", language, codes=codes)
        return _Decision(RESULT_CHOOSE_CODE, reply, candidates)

    def already_taken(alarm: Alarm) -> _Decision:
        reply = render(
            "reply.already_taken",
            language,
            resident_label=_resident_label(session, alarm),
            taker=taker_for(session, alarm, audience=person.kind, language=language),
        )
        return _Decision(RESULT_ALREADY_TAKEN, reply, [alarm])

    def nothing_open() -> _Decision:
        return _Decision(RESULT_NO_OPEN_ALARM, render("reply.no_open_alarm", language))

    if text in STOP_WORDS or text in START_WORDS:
        if person.kind == "staff":
            # Staff cannot opt out of alarms: that is the roster's job, not an SMS keyword.
            return _Decision(RESULT_HELP, render("reply.help", language), untaken_notified())
        stop = text in STOP_WORDS
        involved = untaken_notified()
        _set_opt_out(session, person, opt_out=stop, now=now)
        if stop:
            return _Decision(RESULT_STOP, render("reply.stop", language), involved)
        return _Decision(RESULT_START, render("reply.start", language), involved)

    match = _TAKE_RE.match(text)
    if match is None:
        return _Decision(RESULT_HELP, render("reply.help", language), untaken_notified())
    if not person.acting_ids:
        # Informed relatives carry no responsibility and cannot take an alarm.
        return _Decision(RESULT_NOT_ACTING, render("reply.help", language), untaken_notified())

    code = match.group(1)
    candidates = _notified_alarms(session, person, person.acting_ids, untaken=True)
    if code is not None:
        chosen = [a for a in candidates if _code_of(a) == code]
        if not chosen:
            taken = _latest_taken(session, person, code=code)
            if taken is not None:
                return already_taken(taken)
            return choose(candidates) if candidates else nothing_open()
        candidates = chosen[:1]
    if len(candidates) > 1:
        return choose(candidates)
    if not candidates:
        taken = _latest_taken(session, person)
        return already_taken(taken) if taken is not None else nothing_open()

    alarm = candidates[0]
    outcome = _take(session, alarm, person, actor=f"sms:{person.name}", now=now)
    if outcome == RESULT_TAKEN:
        label = _resident_label(session, alarm)
        reply = render("reply.taken", language, resident_label=label)
        return _Decision(RESULT_TAKEN, reply, [alarm], alarm)
    if outcome == RESULT_ALREADY_TAKEN:
        return already_taken(alarm)
    return _Decision(RESULT_CANCELLED, render("reply.no_open_alarm", language), [alarm])


def _code_of(alarm: Alarm) -> str:
    return (alarm.short_code or str(alarm.id)).upper()


def _take(session: Session, alarm: Alarm, person: _Person, *, actor: str, now: datetime) -> str:
    """Acknowledge ``alarm`` for ``person`` and stop its escalation; a result code.

    Someone else may have taken it since we looked: the transition re-reads the alarm under a
    lock, so of two simultaneous replies exactly one takes it.
    """
    try:
        taken = alarms.transition(
            session, alarm.id, to=AlarmStatus.ACKNOWLEDGED, actor=actor, now=now
        )
    except TransitionError:
        # The transition re-read the alarm (populate_existing): its status is current.
        if AlarmStatus(alarm.status) in _TAKEN_STATUSES:
            return RESULT_ALREADY_TAKEN
        return RESULT_CANCELLED
    engine.alarm_taken(session, taken, taker=person.name, now=now)
    logger.info("alarm %s taken by %s (%s)", alarm.id, actor, person.kind)
    return RESULT_TAKEN


def _reply_detail(
    person: _Person, from_number: str, body: str, result: str, took: bool
) -> dict[str, Any]:
    detail: dict[str, Any] = {"from": from_number, "body": body[:_BODY_MAX_CHARS], "result": result}
    if took:
        detail["taker_kind"] = person.kind
    return detail


def _normalise_body(body: str) -> str:
    return " ".join(body.strip().rstrip(".!").split()).upper()


def _codes(session: Session, candidates: Iterable[Alarm]) -> str:
    return "; ".join(f"{_code_of(a)} ({_resident_label(session, a)})" for a in candidates)


def _set_opt_out(session: Session, person: _Person, *, opt_out: bool, now: datetime) -> None:
    """STOP/START for every relative row of this number; STOP also drops their queued SMS."""
    for relative in person.relatives:
        relative.sms_opt_out = opt_out
    if opt_out:
        session.execute(
            update(Notification)
            .where(
                Notification.recipient_kind == "relative",
                Notification.recipient_id.in_(person.ids),
                Notification.channel == "sms",
                Notification.status == "queued",
            )
            .values(status="cancelled", last_error="recipient answered STOP", updated_at=now)
        )
    session.flush()
    logger.info(
        "relative(s) %s: SMS %s", list(person.ids), "opted out (STOP)" if opt_out else "resumed"
    )


# ---- who is who --------------------------------------------------------------------------------


def phone_variants(number: str) -> tuple[str, ...]:
    """The forms a Norwegian number may be stored in: ``+4791234567``, ``004791234567``,
    ``91234567`` (spaces and dashes are ignored on both sides)."""
    compact = re.sub(r"[\s\-().]", "", number)
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    variants = [compact]
    if compact.startswith("+"):
        variants.append("00" + compact[1:])
    if compact.startswith("+47") and len(compact) == 11:
        variants.append(compact[3:])
    elif re.fullmatch(r"\d{8}", compact):
        variants += ["+47" + compact, "0047" + compact]
    return tuple(dict.fromkeys(variants))


def find_person(session: Session, number: str) -> _Person | None:
    """An active staff user with this phone, else the relative(s) with it, else ``None``.

    Phones are encrypted: the lookup goes by their blind index (``hub.storage.crypto``)."""
    indexes = phone_index_candidates(number)
    staff = session.scalars(
        select(StaffUser)
        .where(StaffUser.active.is_(True), StaffUser.phone_index.in_(indexes))
        .order_by(StaffUser.id)
    ).all()
    if staff:
        if len(staff) > 1:
            logger.warning(
                "phone %s belongs to %d staff accounts; using %s",
                _mask(number),
                len(staff),
                staff[0].username,
            )
        return _staff_person(staff[0])
    relatives = list(
        session.scalars(
            select(Relative)
            .where(Relative.phone_index.in_(indexes))
            .order_by(Relative.priority, Relative.id)
        )
    )
    if not relatives:
        return None
    return _relative_person(relatives)


def _staff_person(user: StaffUser) -> _Person:
    return _Person(
        kind="staff",
        name=user.display_name,
        language=language_of(user.language),
        ids=(user.id,),
        acting_ids=(user.id,),
    )


def _relative_person(relatives: list[Relative]) -> _Person:
    first = relatives[0]
    return _Person(
        kind="relative",
        name=first.name,
        language=language_of(first.language),
        ids=tuple(r.id for r in relatives),
        acting_ids=tuple(r.id for r in relatives if r.role == RelativeRole.ACTING),
        relatives=relatives,
    )


def _recipient_person(session: Session, kind: str, recipient_id: int) -> _Person | None:
    if kind == "staff":
        user = session.get(StaffUser, recipient_id)
        return _staff_person(user) if user is not None else None
    relative = session.get(Relative, recipient_id)
    return _relative_person([relative]) if relative is not None else None


def _notified_alarms(
    session: Session, person: _Person, ids: Sequence[int], *, untaken: bool
) -> list[Alarm]:
    """Alarms any of ``ids`` has a notification for: untaken ones, oldest first."""
    if not ids:
        return []
    statuses = UNTAKEN_STATUSES if untaken else frozenset(_TAKEN_STATUSES)
    notified = (
        select(Notification.alarm_id)
        .where(Notification.recipient_kind == person.kind, Notification.recipient_id.in_(ids))
        .distinct()
    )
    return list(
        session.scalars(
            select(Alarm)
            .where(Alarm.id.in_(notified), Alarm.status.in_(sorted(statuses)))
            .order_by(Alarm.opened_at, Alarm.id)
        )
    )


def _latest_taken(session: Session, person: _Person, *, code: str | None = None) -> Alarm | None:
    """The most recent alarm this person was asked about that someone has taken."""
    taken = _notified_alarms(session, person, person.acting_ids, untaken=False)
    if code is not None:
        taken = [a for a in taken if _code_of(a) == code]
    return taken[-1] if taken else None


def _resident_label(session: Session, alarm: Alarm) -> str:
    resident = session.get(Resident, alarm.resident_id)
    return resident.label if resident is not None else alarm.home_id


def _language_for_unknown(number: str) -> str:
    """Bokmål for Norwegian numbers (and anything unclear), English for foreign ones."""
    compact = phone_variants(number)[0]
    if compact.startswith("+") and not compact.startswith("+47"):
        return "en"
    return "nb"


def _mask(number: str) -> str:
    """A phone number for the log: the last three digits only."""
    return "…" + number[-3:] if len(number) > 3 else "…"


# ---- who took it -------------------------------------------------------------------------------


def taker_actor(session: Session, alarm_id: int) -> str | None:
    """The actor of the transition that took the alarm (the first one to acknowledged, or a
    resolve straight from open/notified); ``None`` if nobody has."""
    entries = session.scalars(
        select(AlarmTimelineEntry)
        .where(
            AlarmTimelineEntry.alarm_id == alarm_id,
            AlarmTimelineEntry.kind == alarms.KIND_TRANSITION,
            AlarmTimelineEntry.to_status.in_(
                (AlarmStatus.ACKNOWLEDGED.value, AlarmStatus.RESOLVED.value)
            ),
        )
        .order_by(AlarmTimelineEntry.id)
    )
    for entry in entries:
        if entry.to_status == AlarmStatus.ACKNOWLEDGED.value:
            return entry.actor
        taken_by = entry.detail.get("taken_by") if entry.detail else None
        if isinstance(taken_by, str):
            return taken_by
    return None


def display_actor(session: Session, actor: str) -> str:
    """An actor for people: ``sms:Nina Nilsen`` / ``voice:…`` → the name, ``user:<username>``
    → that account's display name; anything else after its ``kind:`` prefix."""
    kind, _, rest = actor.partition(":")
    if not rest:
        return actor
    if kind == "user":
        name = session.scalar(select(StaffUser.display_name).where(StaffUser.username == rest))
        return name or rest
    return rest


def _taker_kind(session: Session, alarm_id: int, actor: str) -> PersonKind:
    """Whether staff or a relative took the alarm (from the reply entry that took it)."""
    if actor.startswith("user:"):
        return "staff"
    entries = session.scalars(
        select(AlarmTimelineEntry).where(
            AlarmTimelineEntry.alarm_id == alarm_id, AlarmTimelineEntry.kind == KIND_REPLY
        )
    )
    for entry in entries:
        kind = (entry.detail or {}).get("taker_kind")
        if kind == "relative":
            return "relative"
    return "staff"


def taker_for(session: Session, alarm: Alarm, *, audience: str, language: str) -> str:
    """Who took ``alarm``, as told to ``audience`` (staff or relative).

    Staff hear the person's name. Relatives never get a staff member's name: they hear "the
    home-care service" — or the relative's own name when another relative took it.
    """
    actor = taker_actor(session, alarm.id)
    if actor is None:
        return render("taker.home_care", language)
    name = display_actor(session, actor)
    if audience == "staff":
        return name
    if _taker_kind(session, alarm.id, actor) == "relative":
        return name
    return render("taker.home_care", language)


# ---- delivery receipts -------------------------------------------------------------------------


def map_provider_status(channel: str, status: str) -> str | None:
    """Twilio's status of a message or call as a notification status; ``None`` if unknown."""
    table = VOICE_STATUS_MAP if channel == "voice" else SMS_STATUS_MAP
    return table.get(status.strip().lower())


def next_status(current: str, incoming: str) -> str:
    """The notification status after a receipt: final statuses stay, others only move forward."""
    if current in NOTIFICATION_FINAL:
        return current
    if incoming in NOTIFICATION_FINAL:
        return incoming
    return incoming if _RANK.get(incoming, 0) > _RANK.get(current, 0) else current


def apply_status(
    session: Session,
    *,
    sid: str,
    status: str,
    error_code: str | None,
    now: datetime,
    notification_id: int | None = None,
) -> StatusResult | None:
    """Apply a delivery receipt; what changed, or ``None`` for a message the hub never sent.

    ``notification_id`` comes from the callback URL the sender gave the provider
    (``…/twilio/status/<id>``): a receipt can then arrive before the sender has recorded the
    provider's sid (a loaded hub; the provider answers in milliseconds) and still count, and the
    sid is recorded from it. A receipt naming another sid than the one recorded is an earlier
    attempt's: it goes in the timeline and changes nothing. Without an id (URLs given before
    2026-11-25) the receipt is matched by its sid alone."""
    query = select(Notification).with_for_update()
    if notification_id is None:
        query = query.where(Notification.provider_sid == sid)
    else:
        query = query.where(Notification.id == notification_id)
    note = session.scalars(query).one_or_none()
    if note is None:
        logger.warning("status callback for unknown sid %s (%s): ignored", sid, status)
        return None
    earlier_attempt = note.provider_sid is not None and note.provider_sid != sid
    if note.provider_sid is None:
        note.provider_sid = sid  # came before the sender's own record of it
    mapped = map_provider_status(note.channel, status)
    before = note.status
    after = before if mapped is None or earlier_attempt else next_status(before, mapped)
    if mapped is None:
        logger.warning("notification %s: unknown provider status %r kept out", note.id, status)
    if earlier_attempt:
        logger.info("notification %s: receipt for an earlier attempt %s kept out", note.id, sid)
    changed = after != before
    if changed:
        note.status = after
        note.updated_at = now
    if error_code and not earlier_attempt:
        note.last_error = f"provider error {error_code} ({status})"
        note.updated_at = now
    alarms.add_note(
        session,
        note.alarm_id,
        now=now,
        actor=PROVIDER_ACTOR,
        kind=KIND_DELIVERY,
        detail={
            "notification_id": note.id,
            "channel": note.channel,
            "status": status,
            "error_code": error_code,
            "notification_status": after,
        },
    )
    if changed:
        logger.info("notification %s (%s): %s → %s", note.id, note.channel, before, after)
    return StatusResult(alarm_id=note.alarm_id, notification_status=after, changed=changed)


def apply_status_callback(
    session: Session, *, sid: str, status: str, error_code: str | None, now: datetime
) -> int | None:
    """Apply a signed delivery receipt to its notification; the alarm's id, ``None`` if the
    sid is unknown (logged, not an error). Never commits."""
    result = apply_status(session, sid=sid, status=status, error_code=error_code, now=now)
    return result.alarm_id if result is not None else None


# ---- voice -------------------------------------------------------------------------------------


def voice_twiml(session: Session, notification_id: int, *, now: datetime, gather_url: str) -> str:
    """The TwiML of an alarm call: the alarm read out, "press 1 to take the alarm"."""
    call = _voice_call(session, notification_id)
    if call is None:
        return _hangup()
    _note, alarm, person = call
    response = VoiceResponse()
    say_language = VOICE_LANGUAGES[person.language]
    if AlarmStatus(alarm.status) not in UNTAKEN_STATUSES:
        response.say(_closed_text(session, alarm, person), language=say_language)
        return _twiml(response)
    gather = response.gather(
        num_digits=1, action=gather_url, method="POST", timeout=GATHER_TIMEOUT_S
    )
    gather.say(_voice_prompt(session, alarm, person), language=say_language)
    response.say(render("voice.no_input", person.language), language=say_language)
    return _twiml(response)


def voice_gather(session: Session, notification_id: int, *, digits: str, now: datetime) -> str:
    """The keypress of an alarm call: "1" takes the alarm; other keys hear the prompt again."""
    return voice_keypress(session, notification_id, digits=digits, now=now).twiml


@dataclass(frozen=True)
class VoiceOutcome:
    """The TwiML answering a keypress, the call's alarm and what the keypress did."""

    twiml: str
    alarm_id: int | None
    result: str


def voice_keypress(
    session: Session, notification_id: int, *, digits: str, now: datetime
) -> VoiceOutcome:
    """``voice_gather`` with what it did (for the webhook's listeners). Never commits."""
    call = _voice_call(session, notification_id)
    if call is None:
        return VoiceOutcome(_hangup(), None, RESULT_NO_OPEN_ALARM)
    note, alarm, person = call
    say_language = VOICE_LANGUAGES[person.language]
    response = VoiceResponse()
    pressed = digits.strip()
    if AlarmStatus(alarm.status) not in UNTAKEN_STATUSES:
        result = _closed_result(alarm)
        response.say(_closed_text(session, alarm, person), language=say_language)
    elif pressed != "1":
        result = RESULT_HELP
        # No action: Twilio posts the next keypress to the URL of this document (this one).
        gather = response.gather(num_digits=1, method="POST", timeout=GATHER_TIMEOUT_S)
        gather.say(_voice_prompt(session, alarm, person), language=say_language)
        response.say(render("voice.no_input", person.language), language=say_language)
    elif not person.acting_ids:
        result = RESULT_NOT_ACTING
        response.say(render("voice.no_input", person.language), language=say_language)
    else:
        result = _take(session, alarm, person, actor=f"voice:{person.name}", now=now)
        if result == RESULT_TAKEN:
            response.say(render("voice.taken", person.language), language=say_language)
        else:
            response.say(_closed_text(session, alarm, person), language=say_language)
    _voice_note(session, alarm, note, person, pressed, result, now=now)
    return VoiceOutcome(_twiml(response), alarm.id, result)


def _voice_call(
    session: Session, notification_id: int
) -> tuple[Notification, Alarm, _Person] | None:
    note = session.get(Notification, notification_id)
    if note is None or note.channel != "voice":
        logger.warning("voice TwiML asked for notification %s: no such call", notification_id)
        return None
    alarm = session.get(Alarm, note.alarm_id)
    person = _recipient_person(session, note.recipient_kind, note.recipient_id)
    if alarm is None or person is None:
        logger.warning("voice call %s: its alarm or recipient is gone", notification_id)
        return None
    return note, alarm, person


def _voice_prompt(session: Session, alarm: Alarm, person: _Person) -> str:
    label = _resident_label(session, alarm)
    if person.kind == "relative":
        # Read out to a relative: no alarm type, like their SMS.
        return render("voice.relative_alarm", person.language, resident_label=label)
    return render(
        "voice.alarm",
        person.language,
        type_label=type_label(alarm.type, person.language),
        resident_label=label,
    )


def _closed_result(alarm: Alarm) -> str:
    return RESULT_CANCELLED if alarm.status == AlarmStatus.CANCELLED else RESULT_ALREADY_TAKEN


def _closed_text(session: Session, alarm: Alarm, person: _Person) -> str:
    if alarm.status == AlarmStatus.CANCELLED:
        return render("voice.cancelled", person.language)
    taker = taker_for(session, alarm, audience=person.kind, language=person.language)
    return render("voice.already_taken", person.language, taker=taker)


def _voice_note(
    session: Session,
    alarm: Alarm,
    note: Notification,
    person: _Person,
    digits: str,
    result: str,
    *,
    now: datetime,
) -> None:
    detail = _reply_detail(person, note.to_number or "", digits, result, result == RESULT_TAKEN)
    detail["channel"] = "voice"
    detail["notification_id"] = note.id
    alarms.add_note(
        session, alarm.id, now=now, actor=f"voice:{person.name}", kind=KIND_REPLY, detail=detail
    )


def _hangup() -> str:
    response = VoiceResponse()
    response.hangup()
    return _twiml(response)


def _twiml(response: Any) -> str:
    return str(response.to_xml())


__all__ = [
    "InboundResult",
    "StatusResult",
    "VoiceOutcome",
    "apply_status",
    "apply_status_callback",
    "display_actor",
    "find_person",
    "handle_inbound_sms",
    "map_provider_status",
    "next_status",
    "phone_variants",
    "taker_actor",
    "taker_for",
    "voice_gather",
    "voice_keypress",
    "voice_twiml",
]
