"""The escalation engine: reaches people, step by step, until someone takes the alarm.

GoAlert's model: all escalation state is in the database. ``start_escalation`` writes an
``alarm_escalations`` row (with a snapshot of the policy) in the transaction that opened the
alarm. ``EscalationEngine.tick`` claims due rows in one short transaction (``FOR UPDATE SKIP
LOCKED`` on PostgreSQL, so several hubs can share the work), runs their step, and writes the
outgoing messages to the ``notifications`` outbox in the same commit. Timers only wake it early.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, Protocol, cast
from zoneinfo import ZoneInfo

from sqlalchemy import Select, Table, Text, event, func, select, update
from sqlalchemy import cast as cast_
from sqlalchemy.orm import Session, sessionmaker

from hub import metrics
from hub.alarms import service as alarms
from hub.clock import Clock
from hub.escalation.policy import Policy, from_snapshot, policy_for, snapshot
from hub.escalation.recipients import Directory, Recipient, informed_relatives, resolve_step
from hub.notify.sender import Claimed
from hub.notify.texts import render
from hub.relative_links import make_relative_link
from hub.rules.timers import TimerDriver
from hub.storage.bulk import append_rows, one_of, reserve_ids
from hub.storage.models import (
    Alarm,
    AlarmEscalation,
    AlarmStatus,
    AlarmTimelineEntry,
    Notification,
    Resident,
    Severity,
)

logger = logging.getLogger(__name__)

ACTIVE = "active"
STOPPED = "stopped"
UNANSWERED = "unanswered"
UNTAKEN = (AlarmStatus.OPEN, AlarmStatus.NOTIFIED)
TAKEN = (AlarmStatus.ACKNOWLEDGED, AlarmStatus.ON_SITE, AlarmStatus.RESOLVED)
# Escalations per tick transaction. SQLite has one writer, and a batch of 500 holds it for
# about 50 ms in a burst (an ingest commit waits that long at most). PostgreSQL locks only the
# rows, and 1,000 per batch spend less per step on the statements each batch runs.
DUE_BATCH = 500
DUE_BATCH_PG = 1000
# Threads running tick batches side by side on PostgreSQL (ADR 16).
TICK_WORKERS = 2


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


ACTOR = "hub:escalation"
# session.info key: alarms opened in this transaction whose first step runs before it commits
_OPENED = "escalation_opened"
_HOOKED = "escalation_hooked"
# session.info key: first steps' messages claimed in this transaction, handed over once committed
_HANDED = "escalation_handed"
# session.info key: the earliest next step of the escalations this transaction started
_EARLIEST = "escalation_earliest_due"


_NOTIFICATIONS = cast(Table, Notification.__table__)
_MessageKey = tuple[int, str, str, int, str]  # alarm, purpose, recipient kind and id, channel


class _Outbox:
    """What one transaction of the engine writes: outbox rows, then their timeline entries.

    Messages and notes are collected and written by ``flush`` in bulk: the messages' ids are
    reserved first (the timeline entries name them), then the messages and the entries are
    appended with ``hub.storage.bulk.append_rows``, so a tick advancing hundreds of alarms costs
    a handful of round trips. The caller holds the alarms locked
    (``alarms.lock_alarms``, or a transition in the same transaction). Portal messages are
    'sent' at once: the board shows them.
    """

    def __init__(self, session: Session, now: datetime, *, claim: bool = False) -> None:
        self.session = session
        self.now = now
        # SMS and calls written already claimed ('sending', attempt 1) for a sender to which
        # they are handed over after the commit (ADR 23); ``claimed`` lists them after ``flush``
        self.claim = claim
        self.claimed: list[Claimed] = []
        self._messages: dict[_MessageKey, tuple[int, dict[str, Any], dict[str, Any]]] = {}
        self._notes: list[tuple[int, str, dict[str, Any]]] = []

    def queue(
        self,
        alarm_id: int,
        recipient: Recipient,
        *,
        channel: str,
        purpose: str,
        body: str,
        step_index: int | None = None,
        round_no: int | None = None,
    ) -> bool:
        """Put one message in the outbox; False (and a note) when the person has no number."""
        if channel in ("sms", "voice") and not recipient.phone:
            self.note(
                alarm_id,
                "note",
                {"note": f"{recipient.name} has no phone number; {channel} not sent"},
            )
            return False
        key = (alarm_id, purpose, recipient.kind, recipient.id, channel)
        if key in self._messages:
            logger.warning("alarm %s: %s %s to %s queued twice; sent once", *key[:2], channel, key)
            return True
        now = self.now
        claimed = self.claim and channel != "portal"
        row = {
            "alarm_id": alarm_id,
            "channel": channel,
            "purpose": purpose,
            "recipient_kind": recipient.kind,
            "recipient_id": recipient.id,
            "to_number": recipient.phone if channel != "portal" else None,
            # the board shows the alarm itself: a portal row keeps no copy of the text
            "body": "" if channel == "portal" else body,
            "status": "sent" if channel == "portal" else "sending" if claimed else "queued",
            "attempts": 1 if claimed else 0,
            "next_attempt_at": None if channel == "portal" else now,
            "step_index": step_index,
            "round": round_no,
            "created_at": now,
            "updated_at": now,
        }
        detail = {
            "channel": channel,
            "purpose": purpose,
            "recipient": f"{recipient.kind}:{recipient.id}",
            "step": None if step_index is None else step_index + 1,
            "round": round_no,
        }
        self._messages[key] = (alarm_id, row, detail)
        return True

    def note(self, alarm_id: int, kind: str, detail: dict[str, Any]) -> None:
        """A timeline entry, written after the timeline entries of the messages."""
        self._notes.append((alarm_id, kind, detail))

    def flush(self, notified: Sequence[tuple[int, AlarmStatus]] = ()) -> None:
        """Write the messages, learn their ids, then write the timeline naming them; with
        ``notified`` (alarm id, status read under the lock), also move those alarms to
        'notified', their transitions' entries after the messages' in the same INSERT."""
        session = self.session
        notes: list[tuple[int, str, dict[str, Any]]] = []
        if self._messages:
            # Not the ORM's bulk INSERT (per-row work), nor INSERT … RETURNING (psycopg parses
            # each multi-row statement in Python): ids reserved, then COPY or executemany
            ids = reserve_ids(session, _NOTIFICATIONS, len(self._messages))
            rows = []
            for nid, (alarm_id, row, detail) in zip(ids, self._messages.values(), strict=True):
                rows.append({"id": nid, **row})
                notes.append((alarm_id, "notification", {"notification_id": nid, **detail}))
                if row["status"] == "sending":
                    self.claimed.append(
                        Claimed(nid, alarm_id, row["channel"], row["to_number"], row["body"], 1)
                    )
            append_rows(session, _NOTIFICATIONS, rows, shared=("to_number",))
        notes.extend(self._notes)
        if notified:
            alarms.transition_many_locked(
                session,
                notified,
                to=AlarmStatus.NOTIFIED,
                actor=ACTOR,
                now=self.now,
                notes_before=notes,
            )
        else:
            alarms.add_notes_locked(session, notes, now=self.now, actor=ACTOR)
        self._messages.clear()
        self._notes.clear()


class AlarmFacts(Protocol):
    """What a message about an alarm names (an ``Alarm`` has it, and so does ``_Step``)."""

    @property
    def id(self) -> int: ...
    @property
    def type(self) -> str: ...
    @property
    def severity(self) -> Severity: ...
    @property
    def short_code(self) -> str | None: ...


@lru_cache(maxsize=256)
def _labels(alarm_type: str, severity: Severity, language: str) -> dict[str, str]:
    return {
        "type_label": render(f"type.{alarm_type}", language),
        "severity_label": render(f"severity.{Severity(severity).value}", language),
    }


def _resident_label(session: Session, alarm: Alarm) -> str:
    resident = session.get(Resident, alarm.resident_id)
    return resident.label if resident is not None else alarm.home_id


def _alarm_text(
    label: str, alarm: AlarmFacts, recipient: Recipient, ctx: EscalationContext, now: datetime
) -> str:
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
        **_labels(alarm.type, alarm.severity, recipient.language),
    )


def _voice_text(label: str, alarm: AlarmFacts, language: str) -> str:
    return render(
        "voice.alarm",
        language,
        resident_label=label,
        type_label=_labels(alarm.type, alarm.severity, language)["type_label"],
    )


def voice_recipient_text(session: Session, alarm: Alarm, language: str) -> str:
    """What a voice call reads out (the TwiML endpoint builds the call from the outbox row)."""
    return _voice_text(_resident_label(session, alarm), alarm, language)


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
    outbox = _Outbox(session, now)
    label = resident.label
    for relative in informed_relatives(
        session, resident.id, alarm.type, alarm.severity, now, ctx.tz
    ):
        outbox.queue(
            alarm.id,
            relative,
            channel="sms",
            purpose="informed",
            body=render(
                "sms.relative_informed",
                relative.language,
                resident_label=label,
                link=ctx.relative_link(alarm.id, relative.id, now),
            ).rstrip(),
        )
    outbox.flush()
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
    session: Session,
    esc: AlarmEscalation,
    alarm: Alarm,
    *,
    taker: str | None,
    outbox: _Outbox,
) -> None:
    """End the escalation: cancel what is still queued, tell everyone already reached.

    ``alarm`` is locked by the caller; the messages go into ``outbox`` (the caller flushes)."""
    if esc.state != ACTIVE:
        return
    now = outbox.now
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
        outbox.queue(
            alarm.id,
            recipient,
            channel="sms",
            purpose="taken_by" if taken else "cancelled",
            body=body,
        )
    outbox.note(alarm.id, "escalation_stopped", {"taken_by": taker, "status": alarm.status.value})


def _stop_now(
    session: Session, esc: AlarmEscalation, alarm: Alarm, *, taker: str | None, now: datetime
) -> None:
    outbox = _Outbox(session, now)
    _stop(session, esc, alarm, taker=taker, outbox=outbox)
    outbox.flush()


def alarm_taken(session: Session, alarm: Alarm, *, taker: str, now: datetime) -> None:
    """Someone took ``alarm`` (portal, API, SMS reply, keypress): stop and tell the others.

    The caller's transition holds the alarm locked."""
    esc = session.get(AlarmEscalation, alarm.id, with_for_update=_pg(session))
    if esc is not None:
        _stop_now(session, esc, alarm, taker=taker, now=now)


def alarm_closed(session: Session, alarm: Alarm, *, now: datetime) -> None:
    """The alarm was cancelled (e.g. by the resident): stop and tell those already reached."""
    esc = session.get(AlarmEscalation, alarm.id, with_for_update=_pg(session))
    if esc is not None:
        _stop_now(session, esc, alarm, taker=None, now=now)


def _forget_opened(session: Session, _previous: object) -> None:
    """A rolled-back transaction's opened alarms are gone: nothing to run before a commit, and
    none of their messages to hand over."""
    session.info.pop(_OPENED, None)
    session.info.pop(_HANDED, None)
    session.info.pop(_EARLIEST, None)


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


@dataclass(slots=True)
class _Step:
    """One escalation being advanced, with what its step needs of the alarm: plain values read
    with Core (a tick handles hundreds; ORM objects cost more than the step itself)."""

    id: int  # the alarm's
    status: AlarmStatus
    type: str
    severity: Severity
    resident_id: int
    short_code: str | None
    policy: Policy
    step_index: int
    round: int
    state: str = ACTIVE
    next_due_at: datetime | None = None


def _save_steps(session: Session, steps: Sequence[_Step], now: datetime) -> None:
    """Write the advanced escalations: one UPDATE per distinct new (step, round, state, due)
    — a burst of alarms on one policy is a few statements, not one per alarm. Escalation
    objects already in the session (first steps) are updated to match."""
    groups: dict[tuple[int, int, str, datetime | None], list[int]] = {}
    for step in steps:
        key = (step.step_index, step.round, step.state, step.next_due_at)
        groups.setdefault(key, []).append(step.id)
    for (step_index, round_no, state, due), ids in groups.items():
        for chunk in alarms.chunked(ids):
            session.execute(
                update(AlarmEscalation)
                .where(one_of(session, AlarmEscalation.alarm_id, chunk))
                .values(
                    step_index=step_index,
                    round=round_no,
                    state=state,
                    next_due_at=due,
                    updated_at=now,
                )
            )


def due_query(now: datetime, batch: int, *, pg: bool) -> Select[int, str, int, int]:
    """The first ``batch`` active escalations due at ``now``, oldest due first: (alarm id,
    policy snapshot as JSON text, step index, round). It walks ``ix_alarm_escalations_due``
    (state, due time) in order and stops at ``batch`` rows. PostgreSQL locks the rows it returns
    and skips those another tick holds."""
    query = (
        select(
            AlarmEscalation.alarm_id,
            cast_(AlarmEscalation.policy_snapshot, Text),
            AlarmEscalation.step_index,
            AlarmEscalation.round,
        )
        .where(AlarmEscalation.state == ACTIVE, AlarmEscalation.next_due_at <= now)
        .order_by(AlarmEscalation.next_due_at)
        .limit(batch)
    )
    return query.with_for_update(skip_locked=True) if pg else query


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
        self._wake_lock = threading.Lock()
        self._policies: dict[str, Policy] = {}
        # A running sender's ``hand_over`` (set by the runtime once its loop runs): an alarm's
        # first step then writes its SMS and calls claimed and hands them over (ADR 23).
        self.hand_over: Callable[[Sequence[Claimed]], None] | None = None
        # the wake-up last given to the timer (under ``_wake_lock``)
        self._scheduled_for: datetime | None = None

    def start(self) -> None:
        self._timer.start(self.tick)
        self.tick()

    def stop(self) -> None:
        self._timer.stop()

    def tick(self) -> int:
        """Run every escalation step that is due, a batch per transaction; returns how many
        ran. The sender is woken after each committed batch, so the first messages of a burst
        go out while the rest is still being written.

        On PostgreSQL, as soon as a batch comes back full (a burst), ``TICK_WORKERS - 1`` more
        threads join in: each claims its own due escalations (``SKIP LOCKED``), so while one
        waits for the server (a COPY, a commit) another prepares its batch. SQLite has one
        writer: one batch at a time."""
        with self._lock:
            with self._session_factory() as session:
                pg = _pg(session)
            batch = DUE_BATCH_PG if pg else DUE_BATCH
            if not pg or TICK_WORKERS == 1:
                total = self._run_batches(batch)
            else:
                with ThreadPoolExecutor(TICK_WORKERS - 1, "escalation-tick") as pool:
                    helpers: list[Future[int]] = []

                    def burst() -> None:
                        if not helpers:
                            helpers.extend(
                                pool.submit(self._run_batches, batch)
                                for _k in range(TICK_WORKERS - 1)
                            )

                    total = self._run_batches(batch, on_full=burst)
                    total += sum(helper.result() for helper in helpers)
            self._reschedule()
        if total:
            logger.info("escalation: %d step(s) run", total)
        return total

    def _run_batches(self, batch: int, on_full: Callable[[], None] | None = None) -> int:
        """Batches until nothing more is due (or only alarms others hold); the steps run.
        ``on_full`` is called when a batch claims all it may (more may be due)."""
        total = 0
        for _round in range(100):
            claimed, ran = self._tick_once(batch, on_full)
            total += ran
            if claimed < batch or ran == 0:
                break
        return total

    def _tick_once(self, batch: int, on_full: Callable[[], None] | None = None) -> tuple[int, int]:
        """One transaction: claim up to ``batch`` due escalations and advance them together.

        Everything is read in bulk with Core, as plain values (the escalations; their alarms,
        locked; their residents; the roster and the relatives through one ``Directory``) and
        written in bulk (``_Outbox``, grouped UPDATEs). An alarm a person holds locked right now
        is left for the next tick. Returns (claimed, advanced).
        """
        now = self._clock.now()
        with self._session_factory() as session, session.begin():
            due = session.execute(due_query(now, batch, pg=_pg(session))).all()
            if not due:
                return 0, 0
            if len(due) == batch and on_full is not None:
                on_full()
            locked = alarms.lock_alarm_facts(session, [r[0] for r in due], skip_locked=True)
            # an alarm missing from ``locked`` is held by a person right now (PostgreSQL): the
            # next tick runs it
            steps = [
                _Step(
                    id=alarm_id,
                    status=locked[alarm_id][1],
                    type=locked[alarm_id][2],
                    severity=locked[alarm_id][3],
                    resident_id=locked[alarm_id][4],
                    short_code=locked[alarm_id][5],
                    policy=self._policy(snapshot_text),
                    step_index=step_index,
                    round=round_no,
                )
                for alarm_id, snapshot_text, step_index, round_no in due
                if alarm_id in locked
            ]
            self._run_steps(session, steps, now)
        if steps and self.on_outbox is not None:
            self.on_outbox()  # committed: the sender may go
        return len(due), len(steps)

    def _run_steps(
        self,
        session: Session,
        steps: Sequence[_Step],
        now: datetime,
        *,
        residents: Mapping[int, tuple[str, int]] | None = None,
        save: Callable[[Session, Sequence[_Step], datetime], None] | None = None,
        claim: bool = False,
    ) -> list[Claimed]:
        """Advance these escalations (their alarms locked by this transaction) together:
        residents, roster and relatives read once; outbox and timeline written in bulk; the
        escalations and alarms updated with one UPDATE per distinct new state.

        ``residents`` (id → label, zone) when the caller has them; ``save`` writes the advanced
        escalations (default: ``_save_steps``); ``claim`` writes the SMS and calls already
        claimed, and returns them."""
        resident_ids = {step.resident_id for step in steps}
        if residents is None:
            residents = {
                rid: (label, zone_id)
                for rid, label, zone_id in session.execute(
                    select(Resident.id, Resident.label, Resident.zone_id).where(
                        one_of(session, Resident.id, sorted(resident_ids))
                    )
                )
            }
        directory = Directory(session, now, self.ctx.tz)
        directory.preload_relatives(resident_ids)
        outbox = _Outbox(session, now, claim=claim)
        notified: list[tuple[int, AlarmStatus]] = []
        advanced: list[_Step] = []
        unanswered: list[int] = []
        for step in steps:
            if step.status not in UNTAKEN:
                # taken meanwhile (its escalation not yet stopped): stop it the ordinary way
                esc = session.get(AlarmEscalation, step.id)
                alarm = session.get(Alarm, step.id)
                if esc is not None and alarm is not None:
                    taker = _taker_from_timeline(session, step.id)
                    _stop(session, esc, alarm, taker=taker, outbox=outbox)
                continue
            label, zone_id = residents[step.resident_id]
            if self._advance(step, label, zone_id, outbox, directory):
                notified.append((step.id, step.status))
            advanced.append(step)
            if step.state == UNANSWERED:
                unanswered.append(step.id)
        (save or _save_steps)(session, advanced, now)
        session.flush()  # the few ORM changes of stopped escalations, before the bulk writes
        for chunk in alarms.chunked(unanswered):
            session.execute(
                update(Alarm).where(one_of(session, Alarm.id, chunk)).values(unanswered=True)
            )
        outbox.flush(notified)
        return outbox.claimed

    def _policy(self, snapshot_text: str) -> Policy:
        """The policy of a snapshot (its JSON text), parsed once per distinct snapshot (most
        alarms share one)."""
        policy = self._policies.get(snapshot_text)
        if policy is None:
            if len(self._policies) > 1000:
                self._policies.clear()
            policy = self._policies[snapshot_text] = from_snapshot(json.loads(snapshot_text))
        return policy

    def _advance(
        self,
        step: _Step,
        label: str,
        zone_id: int,
        outbox: _Outbox,
        directory: Directory,
    ) -> bool:
        """Run the escalation's due step; True when the alarm is to become 'notified'."""
        now = outbox.now
        policy = step.policy
        if step.step_index >= len(policy.steps):
            step.round += 1
            step.step_index = 0
            if step.round > policy.repeat_rounds:
                self._unanswered(step, outbox)
                return False
        policy_step = policy.steps[step.step_index]
        recipients = resolve_step(
            outbox.session,
            policy_step,
            zone_id=zone_id,
            resident_id=step.resident_id,
            alarm_type=step.type,
            severity=step.severity,
            at=now,
            tz=self.ctx.tz,
            directory=directory,
        )
        reached = 0
        for recipient in recipients:
            text: str | None = None  # portal and SMS say the same
            for channel in policy_step.channels:
                if channel == "portal" and recipient.kind != "staff":
                    continue
                if channel == "voice":
                    body = _voice_text(label, step, recipient.language)
                else:
                    text = text or _alarm_text(label, step, recipient, self.ctx, now)
                    body = text
                if outbox.queue(
                    step.id,
                    recipient,
                    channel=channel,
                    purpose="alarm",
                    body=body,
                    step_index=step.step_index,
                    round_no=step.round,
                ):
                    reached += 1
        if reached == 0:
            outbox.note(
                step.id,
                "note",
                {"note": f"step {step.step_index + 1} reached nobody", "round": step.round},
            )
        metrics.ESCALATION_STEPS.inc()
        step.step_index += 1
        step.next_due_at = now + timedelta(seconds=policy_step.wait_s)
        # 'notified' means someone was told; a step that reached nobody leaves the alarm open
        return reached > 0 and step.status == AlarmStatus.OPEN

    def _unanswered(self, step: _Step, outbox: _Outbox) -> None:
        step.state = UNANSWERED
        step.next_due_at = None
        outbox.note(step.id, "unanswered", {"rounds": step.round - 1})
        metrics.ALARMS_UNANSWERED.inc()
        logger.error("alarm %s is UNANSWERED after all escalation rounds", step.id)

    def _reschedule(self) -> None:
        # Read and move under one lock: the timer keeps a single wake-up, and the last to move
        # it must be the last to have read (the tick, the ingest worker and the portal all
        # reschedule, each after its own commit).
        with self._wake_lock:
            with self._session_factory() as session:
                nxt = session.scalar(
                    select(func.min(AlarmEscalation.next_due_at)).where(
                        AlarmEscalation.state == ACTIVE
                    )
                )
            self._scheduled_for = nxt
            self._timer.wake_at(nxt)

    def _wake_by(self, due: datetime) -> None:
        """Escalations just committed have a step due at ``due``: make sure the timer fires by
        then. Without a read when it can be decided from the wake-up last set: one still ahead
        and no later than ``due`` stays (the tick it runs reads the next due time itself), one
        later than ``due`` moves to ``due``. A wake-up already past may not have fired yet
        (a step due right now): then the next due time is read as after any other commit."""
        with self._wake_lock:
            scheduled = self._scheduled_for
            if scheduled is not None and scheduled > self._clock.now():
                if due < scheduled:
                    self._scheduled_for = due
                    self._timer.wake_at(due)
                return
        self._reschedule()

    def on_alarm_changed(self, alarm_id: int) -> None:
        """A person changed the alarm (portal/API): if it is taken, stop at once."""
        with self._session_factory() as session:
            seen = session.execute(
                select(Alarm.status, AlarmEscalation.state)
                .join(AlarmEscalation, AlarmEscalation.alarm_id == Alarm.id)
                .where(Alarm.id == alarm_id)
            ).first()
        if seen is None or seen[1] != ACTIVE or seen[0] in UNTAKEN:
            # Nothing to stop (a delivery receipt, a note): decided by a read, so it takes no
            # write lock — on SQLite that would make the next ingest batch wait. If the alarm is
            # taken right after this read, the taker's own call (and the next tick) stop it.
            return
        now = self._clock.now()
        with self._session_factory() as session, session.begin():
            alarm = alarms.lock_alarms(session, [alarm_id]).get(alarm_id)
            esc = session.get(AlarmEscalation, alarm_id, with_for_update=_pg(session))
            if alarm is None or esc is None or esc.state != ACTIVE or alarm.status in UNTAKEN:
                return
            _stop_now(session, esc, alarm, taker=_taker_from_timeline(session, alarm_id), now=now)
        if self.on_outbox is not None:
            self.on_outbox()
        self._reschedule()

    # -- hooks for the rules (hub.rules.service.EscalationHooks) -------------------------------
    def alarm_opened(self, session: Session, alarm: Alarm, now: datetime) -> None:
        """In the transaction that opened ``alarm``: start its escalation, and run step 1 in the
        same commit.

        Step 1 is due the moment the alarm opens, so its messages are written before this
        transaction commits instead of waiting for a timer and another transaction: the sender
        can go as soon as the alarm exists (fall → first SMS is the latency that matters most).
        The alarms a transaction opens are collected and their first steps run together just
        before it commits, in bulk like a tick (a rules batch may open thousands at once)."""
        esc = start_escalation(session, alarm, now=now, ctx=self.ctx)
        if _HOOKED not in session.info:  # once per session, for all its transactions
            session.info[_HOOKED] = True
            event.listen(session, "before_commit", self._first_steps)
            event.listen(session, "after_commit", self._after_commit)
            event.listen(session, "after_soft_rollback", _forget_opened)
        session.info.setdefault(_OPENED, []).append((esc, alarm, now))

    def _first_steps(self, session: Session) -> None:
        opened: list[tuple[AlarmEscalation, Alarm, datetime]] = session.info.pop(_OPENED, [])
        if not opened:
            return
        escalations = {alarm.id: esc for esc, alarm, _now in opened}
        residents: dict[int, tuple[str, int]] = {}
        by_time: dict[datetime, list[_Step]] = {}
        for esc, alarm, now in opened:
            resident = session.get(Resident, alarm.resident_id)  # loaded by start_escalation
            assert resident is not None
            residents[resident.id] = (resident.label, resident.zone_id)
            by_time.setdefault(now, []).append(
                _Step(
                    id=alarm.id,
                    status=alarm.status,
                    type=alarm.type,
                    severity=alarm.severity,
                    resident_id=alarm.resident_id,
                    short_code=alarm.short_code,
                    policy=self._policy(json.dumps(esc.policy_snapshot, sort_keys=True)),
                    step_index=esc.step_index,
                    round=esc.round,
                )
            )

        def save(_session: Session, steps: Sequence[_Step], now: datetime) -> None:
            # the new escalation rows are not written yet: they are INSERTed with step 1 done
            for step in steps:
                esc = escalations[step.id]
                esc.step_index, esc.round, esc.state = step.step_index, step.round, step.state
                esc.next_due_at, esc.updated_at = step.next_due_at, now

        claim = self.hand_over is not None
        with session.no_autoflush:
            for now, steps in by_time.items():
                claimed = self._run_steps(
                    session, steps, now, residents=residents, save=save, claim=claim
                )
                if claimed:
                    session.info.setdefault(_HANDED, []).extend(claimed)
        dues = [step.next_due_at for steps in by_time.values() for step in steps]
        earliest = min((due for due in dues if due is not None), default=None)
        known = session.info.get(_EARLIEST)
        if earliest is not None:
            session.info[_EARLIEST] = earliest if known is None else min(known, earliest)

    def _after_commit(self, session: Session) -> None:
        """Committed: the first steps' claimed messages go to the sender at once (if it was
        stopped meanwhile they stay 'sending' and are requeued like any a dead sender left,
        ``stuck_after_s``, ADR 8); the timer fires by the started escalations' next step."""
        claimed: list[Claimed] = session.info.pop(_HANDED, [])
        earliest: datetime | None = session.info.pop(_EARLIEST, None)
        hand_over = self.hand_over
        if claimed:
            if hand_over is None:
                logger.warning("%d claimed message(s) not handed over: no sender", len(claimed))
            else:
                hand_over(claimed)
        if earliest is not None:
            self._wake_by(earliest)

    def alarm_cancelled(self, session: Session, alarm: Alarm, now: datetime) -> None:
        alarm_closed(session, alarm, now=now)

    def wake(self) -> None:
        """After a commit that started or stopped escalations: send what was queued. The timer
        was set by the commit itself (``_after_commit``): a started escalation's next step
        moves it earlier if need be; a stopped one leaves it (an early wake-up finds nothing
        due and reads the next due time)."""
        if self.on_outbox is not None:
            self.on_outbox()
