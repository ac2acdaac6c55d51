"""The escalation engine: reaches people, step by step, until someone takes the alarm.

GoAlert's model: all escalation state is in the database. ``start_escalation`` writes an
``alarm_escalations`` row (with a snapshot of the policy) in the transaction that opened the
alarm. ``EscalationEngine.tick`` claims due rows in one short transaction (``FOR UPDATE SKIP
LOCKED`` on PostgreSQL, so several hubs can share the work), runs their step, and writes the
outgoing messages to the ``notifications`` outbox in the same commit. Timers only wake it early.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from hub import metrics
from hub.alarms import service as alarms
from hub.clock import Clock
from hub.escalation.policy import from_snapshot, policy_for, snapshot
from hub.escalation.recipients import Recipient, informed_relatives, resolve_step
from hub.notify.texts import render
from hub.relative_links import make_relative_link
from hub.rules.timers import TimerDriver
from hub.storage.models import (
    Alarm,
    AlarmEscalation,
    AlarmStatus,
    AlarmTimelineEntry,
    Notification,
    Resident,
)

logger = logging.getLogger(__name__)

ACTIVE = "active"
STOPPED = "stopped"
UNANSWERED = "unanswered"
UNTAKEN = (AlarmStatus.OPEN, AlarmStatus.NOTIFIED)
TAKEN = (AlarmStatus.ACKNOWLEDGED, AlarmStatus.ON_SITE, AlarmStatus.RESOLVED)
DUE_BATCH = 200


@dataclass(frozen=True, slots=True)
class EscalationContext:
    """What building messages needs besides the alarm: time zone and the portal's address."""

    tz: ZoneInfo
    portal_base_url: str
    # Relatives' SMS carry a signed, expiring link to a page that shows only the alarm's state.
    link_secret: str | None = None
    link_ttl_s: int = 24 * 3600

    def relative_link(self, alarm_id: int, relative_id: int, now: datetime) -> str:
        """The link for a relative's SMS, or "" when relative links are not configured."""
        if not self.link_secret:
            return ""
        token = make_relative_link(
            alarm_id, relative_id, now=now, ttl_s=self.link_ttl_s, secret=self.link_secret
        )
        return f"{self.portal_base_url.rstrip('/')}/r/{token}"


def _queue(
    session: Session,
    alarm: Alarm,
    recipient: Recipient,
    *,
    channel: str,
    purpose: str,
    body: str,
    now: datetime,
    step_index: int | None = None,
    round_no: int | None = None,
    fallback_for_id: int | None = None,
) -> Notification | None:
    """Put one message in the outbox (portal messages are 'sent' at once: the board shows them)."""
    if channel in ("sms", "voice") and not recipient.phone:
        alarms.add_note(
            session,
            alarm.id,
            now=now,
            actor="hub:escalation",
            kind="note",
            detail={"note": f"{recipient.name} has no phone number; {channel} not sent"},
        )
        return None
    note = Notification(
        alarm_id=alarm.id,
        channel=channel,
        purpose=purpose,
        recipient_kind=recipient.kind,
        recipient_id=recipient.id,
        to_number=recipient.phone if channel != "portal" else None,
        body=body,
        status="sent" if channel == "portal" else "queued",
        attempts=0,
        next_attempt_at=None if channel == "portal" else now,
        step_index=step_index,
        round=round_no,
        fallback_for_id=fallback_for_id,
        created_at=now,
        updated_at=now,
    )
    session.add(note)
    session.flush()
    alarms.add_note(
        session,
        alarm.id,
        now=now,
        actor="hub:escalation",
        kind="notification",
        detail={
            "notification_id": note.id,
            "channel": channel,
            "purpose": purpose,
            "recipient": f"{recipient.kind}:{recipient.id}",
            "name": recipient.name,
            "step": None if step_index is None else step_index + 1,
            "round": round_no,
        },
    )
    return note


def _labels(alarm: Alarm, language: str) -> dict[str, str]:
    return {
        "type_label": render(f"type.{alarm.type}", language),
        "severity_label": render(f"severity.{alarm.severity.value}", language),
    }


def _resident_label(session: Session, alarm: Alarm) -> str:
    resident = session.get(Resident, alarm.resident_id)
    return resident.label if resident is not None else alarm.home_id


def _alarm_text(
    session: Session, alarm: Alarm, recipient: Recipient, ctx: EscalationContext, now: datetime
) -> str:
    label = _resident_label(session, alarm)
    code = alarm.short_code or str(alarm.id)
    if recipient.kind == "relative":
        return render(
            "sms.relative_acting_alarm",
            recipient.language,
            resident_label=label,
            code=code,
            link=ctx.relative_link(alarm.id, recipient.id, now),
        ).rstrip()
    return render(
        "sms.staff_alarm",
        recipient.language,
        resident_label=label,
        code=code,
        link=f"{ctx.portal_base_url.rstrip('/')}/alarms/{alarm.id}",
        **_labels(alarm, recipient.language),
    )


def voice_recipient_text(session: Session, alarm: Alarm, language: str) -> str:
    """What a voice call reads out (the TwiML endpoint builds the call from the outbox row)."""
    return render(
        "voice.alarm",
        language,
        resident_label=_resident_label(session, alarm),
        type_label=render(f"type.{alarm.type}", language),
    )


def start_escalation(
    session: Session, alarm: Alarm, *, now: datetime, ctx: EscalationContext
) -> AlarmEscalation:
    """In the transaction that opened ``alarm``: snapshot its policy, tell informed relatives,
    and make step 1 due now."""
    resident = session.get(Resident, alarm.resident_id)
    assert resident is not None
    policy = policy_for(session, resident, alarm.severity)
    if alarm.short_code is None:
        alarm.short_code = str(alarm.id)
    esc = AlarmEscalation(
        alarm_id=alarm.id,
        policy_snapshot=snapshot(policy),
        step_index=0,
        round=1,
        state=ACTIVE,
        next_due_at=now,
        updated_at=now,
    )
    session.add(esc)
    label = resident.label
    for relative in informed_relatives(
        session, resident.id, alarm.type, alarm.severity, now, ctx.tz
    ):
        _queue(
            session,
            alarm,
            relative,
            channel="sms",
            purpose="informed",
            body=render(
                "sms.relative_informed",
                relative.language,
                resident_label=label,
                link=ctx.relative_link(alarm.id, relative.id, now),
            ).rstrip(),
            now=now,
        )
    session.flush()
    return esc


def _notified_people(session: Session, alarm_id: int) -> list[tuple[str, int, str | None]]:
    """(kind, id, phone) of everyone reached about the alarm by SMS or voice, once each."""
    rows = session.execute(
        select(
            Notification.recipient_kind,
            Notification.recipient_id,
            Notification.to_number,
        )
        .where(
            Notification.alarm_id == alarm_id,
            Notification.purpose.in_(("alarm", "fallback")),
            Notification.channel.in_(("sms", "voice")),
            Notification.status.not_in(("queued", "cancelled")),
        )
        .distinct()
    ).all()
    seen: dict[tuple[str, int], tuple[str, int, str | None]] = {}
    for kind, rid, phone in rows:
        seen.setdefault((kind, rid), (kind, rid, phone))
    return list(seen.values())


def _recipient_language(session: Session, kind: str, rid: int) -> tuple[str, str]:
    from hub.storage.models import Relative, StaffUser

    if kind == "staff":
        user = session.get(StaffUser, rid)
        return (user.display_name, user.language) if user else ("?", "nb")
    relative = session.get(Relative, rid)
    return (relative.name, relative.language) if relative else ("?", "nb")


def _stop(
    session: Session, esc: AlarmEscalation, alarm: Alarm, *, taker: str | None, now: datetime
) -> None:
    """End the escalation: cancel what is still queued, tell everyone already reached."""
    if esc.state != ACTIVE:
        return
    esc.state = STOPPED
    esc.next_due_at = None
    esc.updated_at = now
    session.execute(
        update(Notification)
        .where(
            Notification.alarm_id == alarm.id,
            Notification.status == "queued",
            Notification.purpose.in_(("alarm", "fallback")),
        )
        .values(status="cancelled", updated_at=now)
    )
    label = _resident_label(session, alarm)
    taken = alarm.status in TAKEN
    for kind, rid, phone in _notified_people(session, alarm.id):
        name, language = _recipient_language(session, kind, rid)
        if taken and taker is not None and name == taker:
            continue  # the person who took it got a confirmation already
        if taken:
            key = "sms.taken_by" if kind == "staff" else "sms.taken_by_relative"
            body = render(key, language, resident_label=label, taker=taker or "?")
        else:
            body = render("sms.cancelled", language, resident_label=label)
        recipient = Recipient(
            kind=kind,  # type: ignore[arg-type]
            id=rid,
            name=name,
            phone=phone,
            language=language,
            acting=True,
        )
        _queue(
            session,
            alarm,
            recipient,
            channel="sms",
            purpose="taken_by" if taken else "cancelled",
            body=body,
            now=now,
        )
    alarms.add_note(
        session,
        alarm.id,
        now=now,
        actor="hub:escalation",
        kind="escalation_stopped",
        detail={"taken_by": taker, "status": alarm.status.value},
    )


def alarm_taken(session: Session, alarm: Alarm, *, taker: str, now: datetime) -> None:
    """Someone took ``alarm`` (portal, API, SMS reply, keypress): stop and tell the others."""
    esc = session.get(AlarmEscalation, alarm.id, with_for_update=_pg(session))
    if esc is not None:
        _stop(session, esc, alarm, taker=taker, now=now)


def alarm_closed(session: Session, alarm: Alarm, *, now: datetime) -> None:
    """The alarm was cancelled (e.g. by the resident): stop and tell those already reached."""
    esc = session.get(AlarmEscalation, alarm.id, with_for_update=_pg(session))
    if esc is not None:
        _stop(session, esc, alarm, taker=None, now=now)


def _pg(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _taker_from_timeline(session: Session, alarm_id: int) -> str | None:
    actor = session.scalar(
        select(AlarmTimelineEntry.actor)
        .where(
            AlarmTimelineEntry.alarm_id == alarm_id,
            AlarmTimelineEntry.kind == "transition",
            AlarmTimelineEntry.to_status.in_(("acknowledged", "on_site", "resolved")),
        )
        .order_by(AlarmTimelineEntry.id)
        .limit(1)
    )
    if actor is None:
        return None
    return actor.split(":", 1)[-1]


class EscalationEngine:
    """Runs due escalation steps; woken by its timer, by new alarms and by people's actions."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        clock: Clock,
        timer: TimerDriver,
        ctx: EscalationContext,
        *,
        on_outbox: Callable[[], None] | None = None,
    ) -> None:
        self._session_factory = session_factory
        self._clock = clock
        self._timer = timer
        self.ctx = ctx
        self.on_outbox = on_outbox
        self._lock = threading.Lock()

    def start(self) -> None:
        self._timer.start(self.tick)
        self.tick()

    def stop(self) -> None:
        self._timer.stop()

    def tick(self) -> int:
        """Run every escalation step that is due; returns how many ran."""
        with self._lock:
            total = 0
            for _round in range(100):
                ran = self._tick_once()
                total += ran
                if ran < DUE_BATCH:
                    break
            self._reschedule()
        if total and self.on_outbox is not None:
            self.on_outbox()
        return total

    def _tick_once(self) -> int:
        now = self._clock.now()
        with self._session_factory() as session, session.begin():
            query = (
                select(AlarmEscalation)
                .where(AlarmEscalation.state == ACTIVE, AlarmEscalation.next_due_at <= now)
                .order_by(AlarmEscalation.next_due_at)
                .limit(DUE_BATCH)
            )
            if _pg(session):
                query = query.with_for_update(skip_locked=True)
            rows: Sequence[AlarmEscalation] = session.scalars(query).all()
            for esc in rows:
                self._advance(session, esc, now)
            return len(rows)

    def _advance(self, session: Session, esc: AlarmEscalation, now: datetime) -> None:
        alarm = session.get(Alarm, esc.alarm_id)
        if alarm is None:
            esc.state, esc.next_due_at = STOPPED, None
            return
        if alarm.status not in UNTAKEN:
            _stop(session, esc, alarm, taker=_taker_from_timeline(session, alarm.id), now=now)
            return
        policy = from_snapshot(esc.policy_snapshot)
        if esc.step_index >= len(policy.steps):
            esc.round += 1
            esc.step_index = 0
            if esc.round > policy.repeat_rounds:
                self._unanswered(session, esc, alarm, now)
                return
        step = policy.steps[esc.step_index]
        resident = session.get(Resident, alarm.resident_id)
        assert resident is not None
        recipients = resolve_step(
            session,
            step,
            zone_id=resident.zone_id,
            resident_id=resident.id,
            alarm_type=alarm.type,
            severity=alarm.severity,
            at=now,
            tz=self.ctx.tz,
        )
        reached = 0
        for recipient in recipients:
            for channel in step.channels:
                if channel == "portal" and recipient.kind != "staff":
                    continue
                body = (
                    voice_recipient_text(session, alarm, recipient.language)
                    if channel == "voice"
                    else _alarm_text(session, alarm, recipient, self.ctx, now)
                )
                if _queue(
                    session,
                    alarm,
                    recipient,
                    channel=channel,
                    purpose="alarm",
                    body=body,
                    now=now,
                    step_index=esc.step_index,
                    round_no=esc.round,
                ):
                    reached += 1
        if reached == 0:
            alarms.add_note(
                session,
                alarm.id,
                now=now,
                actor="hub:escalation",
                kind="note",
                detail={"note": f"step {esc.step_index + 1} reached nobody", "round": esc.round},
            )
        if alarm.status == AlarmStatus.OPEN:
            alarms.transition(
                session, alarm.id, to=AlarmStatus.NOTIFIED, actor="hub:escalation", now=now
            )
        metrics.ESCALATION_STEPS.inc()
        esc.step_index += 1
        esc.next_due_at = now + timedelta(seconds=step.wait_s)
        esc.updated_at = now

    def _unanswered(
        self, session: Session, esc: AlarmEscalation, alarm: Alarm, now: datetime
    ) -> None:
        esc.state = UNANSWERED
        esc.next_due_at = None
        esc.updated_at = now
        alarm.unanswered = True
        alarms.add_note(
            session,
            alarm.id,
            now=now,
            actor="hub:escalation",
            kind="unanswered",
            detail={"rounds": esc.round - 1},
        )
        metrics.ALARMS_UNANSWERED.inc()
        logger.error("alarm %s is UNANSWERED after all escalation rounds", alarm.id)

    def _reschedule(self) -> None:
        with self._session_factory() as session:
            nxt = session.scalar(
                select(func.min(AlarmEscalation.next_due_at)).where(AlarmEscalation.state == ACTIVE)
            )
        self._timer.wake_at(nxt)

    def on_alarm_changed(self, alarm_id: int) -> None:
        """A person changed the alarm (portal/API): if it is taken, stop at once."""
        now = self._clock.now()
        with self._session_factory() as session, session.begin():
            alarm = session.get(Alarm, alarm_id)
            esc = session.get(AlarmEscalation, alarm_id, with_for_update=_pg(session))
            if alarm is None or esc is None or esc.state != ACTIVE or alarm.status in UNTAKEN:
                return
            _stop(session, esc, alarm, taker=_taker_from_timeline(session, alarm_id), now=now)
        if self.on_outbox is not None:
            self.on_outbox()
        self._reschedule()

    # -- hooks for the rules (hub.rules.service.EscalationHooks) -------------------------------
    def alarm_opened(self, session: Session, alarm: Alarm, now: datetime) -> None:
        start_escalation(session, alarm, now=now, ctx=self.ctx)

    def alarm_cancelled(self, session: Session, alarm: Alarm, now: datetime) -> None:
        alarm_closed(session, alarm, now=now)

    def wake(self) -> None:
        """After a commit that started or stopped escalations: run what is due, queue sends."""
        self._reschedule()
        if self.on_outbox is not None:
            self.on_outbox()
