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
from datetime import datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
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
from hub.storage.models import Alarm, Device, Resident, Room, RuleState

logger = logging.getLogger(__name__)

AFTER_COMMIT_HOMES = "carehub_feedback_homes"
AFTER_COMMIT_ESCALATE = "carehub_escalate"


class EscalationHooks(Protocol):
    """What the rules tell escalation, inside their transaction and after the commit."""

    def alarm_opened(self, session: Session, alarm: Alarm, now: datetime) -> None: ...

    def alarm_cancelled(self, session: Session, alarm: Alarm, now: datetime) -> None: ...

    def wake(self) -> None: ...


DUE_BATCH = 200


def load_context(session: Session, resident: Resident, tz: ZoneInfo) -> HomeContext:
    """The resident's home and devices, fresh from the database."""
    rows = session.execute(
        select(Device, Room.kind)
        .outerjoin(Room, Room.id == Device.room_id)
        .where(Device.home_id == resident.home_id, Device.retired_at.is_(None))
        .order_by(Device.id)
    ).all()
    devices = tuple(
        DeviceInfo(
            id=d.id,
            type=d.type,
            room_kind=kind,
            supervision_interval_s=d.supervision_interval_s,
            last_seen_at=d.last_seen_at,
            online=d.online,
            battery=d.battery,
            tamper=d.tamper,
            test_mode_until=d.test_mode_until,
        )
        for d, kind in rows
    )
    return HomeContext(
        resident_id=resident.id,
        home_id=resident.home_id,
        devices=devices,
        absence_until=resident.absence_until,
        config=rule_config(resident.rule_config),
        tz=tz,
    )


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
                )
            )
        if not by_home:
            return
        now = self._clock.now()
        changed: set[str] = set()
        residents = session.scalars(
            select(Resident).where(Resident.home_id.in_(by_home)).order_by(Resident.id)
        ).all()
        for resident in residents:
            ctx = load_context(session, resident, self._tz)
            row = self._lock_state(session, resident.id, now)
            state = dict(row.state)
            for obs in by_home[resident.home_id]:
                result = engine.evaluate_observation(ctx, state, obs, now)
                state = self._apply(session, ctx, state, result, now, changed)
            self._save(row, state, now)
        session.info.setdefault(AFTER_COMMIT_HOMES, set()).update(changed)

    def after_commit(self, info: dict[str, Any]) -> None:
        """After the ingest commit: feedback to the homes that changed, timer to the next due."""
        if info.get(AFTER_COMMIT_ESCALATE) and self.escalation is not None:
            self.escalation.wake()
        homes = info.get(AFTER_COMMIT_HOMES) or set()
        if homes and self.feedback is not None:
            with self._session_factory() as session:
                self.feedback.publish_homes(session, homes, self._clock.now())
        self._reschedule()

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
                query = (
                    select(RuleState)
                    .where(RuleState.next_due_at <= now)
                    .order_by(RuleState.next_due_at)
                    .limit(DUE_BATCH)
                )
                if session.get_bind().dialect.name == "postgresql":
                    query = query.with_for_update(skip_locked=True)
                rows = session.scalars(query).all()
                for row in rows:
                    resident = session.get(Resident, row.resident_id)
                    if resident is None:
                        row.next_due_at = None
                        continue
                    ctx = load_context(session, resident, self._tz)
                    result = engine.evaluate_due(ctx, dict(row.state), now)
                    state = self._apply(session, ctx, dict(row.state), result, now, changed)
                    self._save(row, state, now)
                    if row.next_due_at is not None and row.next_due_at <= now:
                        logger.error(
                            "rules for resident %s are due again at once; pushing on",
                            row.resident_id,
                        )
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
        with self._session_factory() as session:
            nxt = session.scalar(select(func.min(RuleState.next_due_at)))
        self._timer.wake_at(nxt)

    # -- state and decisions --------------------------------------------------------------------
    def _lock_state(self, session: Session, resident_id: int, now: datetime) -> RuleState:
        query = select(RuleState).where(RuleState.resident_id == resident_id)
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update()
        row = session.scalars(query).first()
        if row is None:
            row = RuleState(resident_id=resident_id, state=engine.initial_state(), updated_at=now)
            session.add(row)
            session.flush()
        return row

    @staticmethod
    def _save(row: RuleState, state: dict[str, Any], now: datetime) -> None:
        row.state = state
        row.updated_at = now

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
        row = session.get(RuleState, ctx.resident_id)
        if row is not None:
            row.next_due_at = result.next_due_at
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
