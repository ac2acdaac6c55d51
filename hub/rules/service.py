"""The rules adapter: runs the pure engine inside the ingest transaction and on due times.

For each new event the home's residents are evaluated in the same transaction that stores the
event (so an alarm exists exactly when its event does). Timer-driven rules keep their due time in
``rule_states.next_due_at``; the timer driver only wakes ``run_due``, which claims due rows
(``FOR UPDATE SKIP LOCKED`` on PostgreSQL), evaluates and commits. A restarted hub finds the due
times in the database and fires what became due while it was away, at once.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import Table, func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from hub import metrics
from hub.alarms import service as alarms
from hub.clock import Clock
from hub.feedback import PREALARM_KEY, FeedbackPublisher
from hub.ingest.pipeline import BatchOutcome
from hub.rules import engine
from hub.rules.config import rule_config
from hub.rules.model import (
    CancelAlarm,
    ConditionCleared,
    Decision,
    DeviceInfo,
    Evaluation,
    HomeContext,
    Note,
    Observation,
    Prealarm,
    PrealarmCancelled,
    RaiseAlarm,
)
from hub.rules.timers import TimerDriver
from hub.storage.bulk import one_of, update_rows
from hub.storage.db import is_postgres
from hub.storage.models import Alarm, Device, DeviceType, Resident, Room, RuleState

logger = logging.getLogger(__name__)

AFTER_COMMIT_HOMES = "carehub_feedback_homes"
AFTER_COMMIT_ESCALATE = "carehub_escalate"
AFTER_COMMIT_EARLIEST = "carehub_rules_earliest_due"


class EscalationHooks(Protocol):
    """What the rules tell escalation, inside their transaction and after the commit."""

    def alarm_opened(self, session: Session, alarm: Alarm, now: datetime) -> None: ...

    def alarm_cancelled(self, session: Session, alarm: Alarm, now: datetime) -> None: ...

    def wake(self) -> None: ...


DUE_BATCH = 200


_RESIDENTS: Table = Resident.__table__  # type: ignore[assignment]
_DEVICES: Table = Device.__table__  # type: ignore[assignment]
_ROOMS: Table = Room.__table__  # type: ignore[assignment]
_STATES: Table = RuleState.__table__  # type: ignore[assignment]
_DEFAULT_CONFIG = rule_config(None)


def load_contexts(
    session: Session, *, resident_ids: Iterable[int] | None = None, home_ids: Iterable[str] = ()
) -> list[tuple[int, str, Any, Any]]:
    """(resident id, home id, absence_until, rule_config) of the residents asked for."""
    r = _RESIDENTS.c
    query = select(r.id, r.home_id, r.absence_until, r.rule_config).order_by(r.id)
    if resident_ids is not None:
        query = query.where(one_of(session, r.id, list(resident_ids)))
    else:
        query = query.where(one_of(session, r.home_id, list(home_ids)))
    return [tuple(row) for row in session.connection().execute(query)]


def build_contexts(
    session: Session, residents: list[tuple[int, str, Any, Any]], tz: ZoneInfo
) -> dict[int, HomeContext]:
    """Each resident's home and devices, fresh from the database, in two queries in all."""
    homes = {home_id for _rid, home_id, _absent, _cfg in residents}
    d, room = _DEVICES.c, _ROOMS.c
    devices: dict[str, list[DeviceInfo]] = defaultdict(list)
    if homes:
        rows = session.connection().execute(
            select(
                d.home_id,
                d.id,
                d.type,
                room.kind,
                d.supervision_interval_s,
                d.last_seen_at,
                d.online,
                d.battery,
                d.tamper,
                d.test_mode_until,
            )
            .select_from(_DEVICES.outerjoin(_ROOMS, room.id == d.room_id))
            .where(one_of(session, d.home_id, sorted(homes)), d.retired_at.is_(None))
            .order_by(d.id)
        )
        for home_id, *fields in rows:
            devices[home_id].append(
                DeviceInfo(
                    id=fields[0],
                    type=DeviceType(fields[1]),
                    room_kind=fields[2],
                    supervision_interval_s=fields[3],
                    last_seen_at=fields[4],
                    online=fields[5],
                    battery=fields[6],
                    tamper=fields[7],
                    test_mode_until=fields[8],
                )
            )
    return {
        rid: HomeContext(
            resident_id=rid,
            home_id=home_id,
            devices=tuple(devices.get(home_id, ())),
            absence_until=absence,
            config=_DEFAULT_CONFIG if not overrides else rule_config(overrides),
            tz=tz,
        )
        for rid, home_id, absence, overrides in residents
    }


def load_context(session: Session, resident: Resident, tz: ZoneInfo) -> HomeContext:
    """One resident's context (for tools and tests)."""
    rows = [(resident.id, resident.home_id, resident.absence_until, resident.rule_config)]
    return build_contexts(session, rows, tz)[resident.id]


class RulesService:
    """Evaluates rules for new events (as an ingest sink) and for due times (on the timer)."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        clock: Clock,
        timer: TimerDriver,
        *,
        timezone: str = "Europe/Oslo",
        feedback: FeedbackPublisher | None = None,
        escalation: EscalationHooks | None = None,
    ) -> None:
        self._session_factory = session_factory
        self._clock = clock
        self._timer = timer
        self._tz = ZoneInfo(timezone)
        self.feedback = feedback
        self.escalation = escalation
        self._due_lock = threading.Lock()
        # The ingest worker and the timer's thread both move the wake-up: a later one must never
        # replace an earlier one it did not see (the timer keeps one wake-up), so compare and
        # move under a lock.
        self._wake_lock = threading.Lock()
        self._scheduled_for: datetime | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the timer and catch up with whatever became due while the hub was away."""
        self._timer.start(self.run_due)
        self.run_due()
        if self.feedback is not None:
            with self._session_factory() as session:
                self.feedback.publish_all(session, self._clock.now())

    def stop(self) -> None:
        self._timer.stop()

    # -- ingest sink ----------------------------------------------------------------------------
    def handle(self, session: Session, outcome: BatchOutcome) -> None:
        """Evaluate the new events of a batch, in the batch's transaction."""
        by_home: dict[str, list[Observation]] = defaultdict(list)
        for event in outcome.stored:
            by_home[event.home_id].append(
                Observation(
                    device_id=event.device_id,
                    kind=event.kind,
                    at=event.received_at,
                    data=dict(event.data),
                    ts=event.event_ts,
                )
            )
        if not by_home:
            return
        now = self._clock.now()
        changed: set[str] = set()
        residents = load_contexts(session, home_ids=by_home)
        contexts = build_contexts(session, residents, self._tz)
        states = self._load_states(session, list(contexts), lock=True)
        saved: dict[int, tuple[dict[str, Any], datetime | None]] = {}
        for rid, ctx in contexts.items():
            state = states.get(rid) or engine.initial_state()
            next_due: datetime | None = None
            for obs in by_home[ctx.home_id]:
                result = engine.evaluate_observation(ctx, state, obs, now)
                state = self._apply(session, ctx, state, result, now, changed)
                next_due = result.next_due_at
            saved[rid] = (state, next_due)
        self._save_states(session, saved, existing=set(states), now=now)
        session.info.setdefault(AFTER_COMMIT_HOMES, set()).update(changed)
        dues = [due for _state, due in saved.values() if due is not None]
        if dues:
            earliest = min(dues)
            known = session.info.get(AFTER_COMMIT_EARLIEST)
            session.info[AFTER_COMMIT_EARLIEST] = (
                earliest if known is None else min(known, earliest)
            )

    def after_commit(self, info: dict[str, Any]) -> None:
        """After the ingest commit: feedback to the homes that changed, timer to the next due."""
        if info.get(AFTER_COMMIT_ESCALATE) and self.escalation is not None:
            self.escalation.wake()
        homes = info.get(AFTER_COMMIT_HOMES) or set()
        if homes and self.feedback is not None:
            with self._session_factory() as session:
                self.feedback.publish_homes(session, homes, self._clock.now())
        earliest = info.get(AFTER_COMMIT_EARLIEST)
        # The timer only ever needs to move earlier here: a later due time is found by the
        # run_due that the current wake-up triggers (timers only wake the rules early).
        if earliest is None:
            return
        with self._wake_lock:
            if self._scheduled_for is None or earliest < self._scheduled_for:
                self._scheduled_for = earliest
                self._timer.wake_at(earliest)

    # -- timers ---------------------------------------------------------------------------------
    def run_due(self) -> int:
        """Evaluate every resident whose next due time has come; returns how many."""
        with self._due_lock:
            total = 0
            for _attempt in range(5):
                try:
                    total += self._run_due_once()
                    break
                except OperationalError as exc:  # SQLite writer contention: read again, retry
                    logger.info("due rules retry after %s", exc)
            self._reschedule()
            return total

    def _run_due_once(self) -> int:
        total = 0
        for _round in range(100):
            now = self._clock.now()
            changed: set[str] = set()
            with self._session_factory() as session, session.begin():
                st = _STATES.c
                query = (
                    select(st.resident_id, st.state)
                    .where(st.next_due_at <= now)
                    .order_by(st.next_due_at)
                    .limit(DUE_BATCH)
                )
                if session.get_bind().dialect.name == "postgresql":
                    query = query.with_for_update(skip_locked=True)
                rows = session.connection().execute(query).all()
                due_states = {rid: dict(state) for rid, state in rows}
                contexts = build_contexts(
                    session, load_contexts(session, resident_ids=due_states), self._tz
                )
                saved: dict[int, tuple[dict[str, Any], datetime | None]] = {}
                for rid, state in due_states.items():
                    ctx = contexts.get(rid)
                    if ctx is None:
                        saved[rid] = (state, None)
                        continue
                    result = engine.evaluate_due(ctx, state, now)
                    new_state = self._apply(session, ctx, state, result, now, changed)
                    if result.next_due_at is not None and result.next_due_at <= now:
                        logger.error("rules for resident %s are due again at once", rid)
                    saved[rid] = (new_state, result.next_due_at)
                self._save_states(session, saved, existing=set(due_states), now=now)
                info = dict(session.info)
            if info.get(AFTER_COMMIT_ESCALATE) and self.escalation is not None:
                self.escalation.wake()
            if changed and self.feedback is not None:
                with self._session_factory() as session:
                    self.feedback.publish_homes(session, changed, now)
            total += len(rows)
            if len(rows) < DUE_BATCH:
                break
        return total

    def _reschedule(self) -> None:
        # Read under the lock: a commit's earlier due time either is in this read or is compared
        # with its result afterwards (after_commit waits for the lock).
        with self._wake_lock:
            with self._session_factory() as session:
                nxt = session.scalar(select(func.min(RuleState.next_due_at)))
            self._scheduled_for = nxt
            self._timer.wake_at(nxt)

    # -- state and decisions --------------------------------------------------------------------
    @staticmethod
    def _load_states(
        session: Session, resident_ids: list[int], *, lock: bool
    ) -> dict[int, dict[str, Any]]:
        """The residents' rule states (locked on PostgreSQL, so two hubs take turns)."""
        if not resident_ids:
            return {}
        st = _STATES.c
        query = select(st.resident_id, st.state).where(
            one_of(session, st.resident_id, resident_ids)
        )
        if lock and is_postgres(session.get_bind()):
            query = query.with_for_update()
        return {rid: dict(state) for rid, state in session.connection().execute(query)}

    @staticmethod
    def _save_states(
        session: Session,
        saved: dict[int, tuple[dict[str, Any], datetime | None]],
        *,
        existing: set[int],
        now: datetime,
    ) -> None:
        """Write the new states and due times: one UPDATE (``update_rows``) and one INSERT."""
        updates = [
            {"resident_id": rid, "state": state, "next_due_at": due, "updated_at": now}
            for rid, (state, due) in saved.items()
            if rid in existing
        ]
        inserts = [
            {"resident_id": rid, "state": state, "next_due_at": due, "updated_at": now}
            for rid, (state, due) in saved.items()
            if rid not in existing
        ]
        update_rows(session, _STATES, updates, key="resident_id")
        if inserts:
            session.connection().execute(_STATES.insert(), inserts)

    def _apply(
        self,
        session: Session,
        ctx: HomeContext,
        previous: dict[str, Any],
        result: Evaluation,
        now: datetime,
        changed: set[str],
    ) -> dict[str, Any]:
        state = dict(result.state)
        if PREALARM_KEY in previous:
            state[PREALARM_KEY] = previous[PREALARM_KEY]
        for decision in result.decisions:
            self._decide(session, ctx, state, decision, now, changed)
        return state

    def _decide(
        self,
        session: Session,
        ctx: HomeContext,
        state: dict[str, Any],
        decision: Decision,
        now: datetime,
        changed: set[str],
    ) -> None:
        if isinstance(decision, RaiseAlarm):
            alarm, created = alarms.open_or_join(
                session,
                now=now,
                resident_id=ctx.resident_id,
                home_id=ctx.home_id,
                type=decision.type.value,
                severity=decision.severity,
                summary=decision.summary,
                device_id=decision.device_id,
            )
            if created and self.escalation is not None:
                self.escalation.alarm_opened(session, alarm, now)
                session.info[AFTER_COMMIT_ESCALATE] = True
            if created:
                metrics.ALARMS_OPENED.labels(
                    type=decision.type.value, severity=decision.severity.value
                ).inc()
                logger.warning(
                    "alarm %s opened: %s for resident %s (%s)",
                    alarm.id,
                    decision.type.value,
                    ctx.resident_id,
                    decision.summary,
                )
            if decision.type.value == state.get(PREALARM_KEY, {}).get("type"):
                state.pop(PREALARM_KEY, None)
            changed.add(ctx.home_id)
        elif isinstance(decision, CancelAlarm):
            cancelled = alarms.cancel_open(
                session,
                resident_id=ctx.resident_id,
                type=decision.type.value,
                now=now,
                actor="resident",
                reason=decision.reason,
            )
            if cancelled is not None and self.escalation is not None:
                self.escalation.alarm_cancelled(session, cancelled, now)
                session.info[AFTER_COMMIT_ESCALATE] = True
            changed.add(ctx.home_id)
        elif isinstance(decision, ConditionCleared):
            for alarm in alarms.list_alarms(
                session,
                status=["open", "notified", "acknowledged", "on_site"],
                resident_id=ctx.resident_id,
                type=decision.type.value,
                since=None,
                until=None,
                limit=50,
                offset=0,
            ):
                if decision.device_id is None or alarm.device_id == decision.device_id:
                    alarms.add_note(
                        session,
                        alarm.id,
                        now=now,
                        actor="hub:rules",
                        kind="condition_cleared",
                        detail={"note": decision.note, "device_id": decision.device_id},
                    )
        elif isinstance(decision, Prealarm):
            state[PREALARM_KEY] = {
                "type": decision.type.value,
                "fires_at": decision.fires_at.isoformat(),
            }
            logger.info("pre-alarm %s for resident %s", decision.type.value, ctx.resident_id)
            changed.add(ctx.home_id)
        elif isinstance(decision, PrealarmCancelled):
            state.pop(PREALARM_KEY, None)
            changed.add(ctx.home_id)
        elif isinstance(decision, Note):
            logger.info("rules note for resident %s: %s", ctx.resident_id, decision.text)
