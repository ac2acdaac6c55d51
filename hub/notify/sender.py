"""The outbox sender: hands queued SMS and calls to Twilio (or the simulator) and retries.

Claiming is its own short transaction: a row goes ``queued → sending`` and commits before the
provider is called, then ``sending → sent`` (with the provider's sid) or back to ``queued`` with a
backoff. When the process dies in between (docs/decisions/0008-sending-at-least-once.md), a row
left in ``sending`` is sent again after ``stuck_after_s``: an alarm message is never lost, and a
duplicate SMS or call is possible in exactly that window. An alarm's first step claims its own
messages in the transaction that opens the alarm and hands them over in memory (``hand_over``,
ADR 23): the same ``sending`` state, without a claim transaction of the sender's.

A red alarm's SMS to staff that fails, comes back undelivered, or is not delivered within
``red_sms_delivery_timeout_s`` is followed by one voice call to the same person.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from hub import metrics
from hub.alarms import service as alarms
from hub.clock import Clock
from hub.config import Settings
from hub.storage.models import Alarm, AlarmStatus, Notification, Severity, StaffUser

logger = logging.getLogger(__name__)

CLAIM_BATCH = 50
MAX_TRANSIENT_ATTEMPTS = 8
UNTAKEN = (AlarmStatus.OPEN, AlarmStatus.NOTIFIED)


class ProviderError(Exception):
    """The provider refused or failed; ``transient`` says whether to retry."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


class Provider(Protocol):
    """Sends one SMS or starts one call; returns the provider's id for it."""

    def send_sms(self, *, to: str, body: str, status_callback: str) -> str: ...

    def start_call(self, *, to: str, twiml_url: str, status_callback: str) -> str: ...


class TwilioProvider:
    """The real ``twilio`` library, pointed at Twilio or at a compatible server."""

    def __init__(self, settings: Settings) -> None:
        from twilio.http.http_client import TwilioHttpClient
        from twilio.rest import Client

        cfg = settings.twilio
        self._from = cfg.from_number
        self._client = Client(
            cfg.account_sid,
            cfg.auth_token,
            http_client=TwilioHttpClient(timeout=cfg.request_timeout_s),
        )
        if cfg.api_base_url:
            self._client.api.base_url = cfg.api_base_url.rstrip("/")

    @staticmethod
    def _call(fn: Callable[[], Any]) -> str:
        from requests.exceptions import RequestException
        from twilio.base.exceptions import TwilioException, TwilioRestException

        try:
            return str(fn().sid)
        except TwilioRestException as exc:
            transient = exc.status >= 500 or exc.status == 429
            raise ProviderError(
                f"HTTP {exc.status} (Twilio {exc.code}): {exc.msg}", transient=transient
            ) from exc
        except (RequestException, TwilioException, OSError) as exc:
            raise ProviderError(f"{type(exc).__name__}: {exc}", transient=True) from exc

    def send_sms(self, *, to: str, body: str, status_callback: str) -> str:
        return self._call(
            lambda: self._client.messages.create(
                to=to, from_=self._from, body=body, status_callback=status_callback
            )
        )

    def start_call(self, *, to: str, twiml_url: str, status_callback: str) -> str:
        return self._call(
            lambda: self._client.calls.create(
                to=to,
                from_=self._from,
                url=twiml_url,
                status_callback=status_callback,
                status_callback_event=["initiated", "ringing", "answered", "completed"],
            )
        )


@dataclass(frozen=True, slots=True)
class Claimed:
    """A message in ``sending``, claimed for one attempt: by the sender's own claim, or by the
    transaction that queued it (an alarm's first step, ``Sender.hand_over``)."""

    id: int
    alarm_id: int
    channel: str
    to_number: str
    body: str
    attempts: int


def backoff_s(attempts: int) -> float:
    """Seconds before the next try after ``attempts`` tries (1, 2, 4 … capped at 30)."""
    return float(min(30, 2 ** max(0, attempts - 1)))


# Alarm messages (and informed relatives' one SMS) are retried for as long as the alarm is not
# taken; the others (taken-by, cancelled) give up after MAX_TRANSIENT_ATTEMPTS.
PERSISTENT_PURPOSES = ("alarm", "fallback", "informed")


class Sender:
    """Drains the outbox. ``drain`` may run in any thread and in several hubs at once."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        clock: Clock,
        provider: Provider,
        *,
        public_base_url: str,
        red_sms_delivery_timeout_s: int = 90,
        stuck_after_s: int = 120,
    ) -> None:
        self._session_factory = session_factory
        self._clock = clock
        self._provider = provider
        self._base = public_base_url.rstrip("/")
        self._red_timeout = timedelta(seconds=red_sms_delivery_timeout_s)
        self._stuck_after = timedelta(seconds=stuck_after_s)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._handed: deque[Claimed] = deque()

    # -- background loop ------------------------------------------------------------------------
    def start_background(self, poll_s: float = 1.0) -> None:
        self._thread = threading.Thread(
            target=self._loop, args=(poll_s,), name="sender", daemon=True
        )
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def hand_over(self, items: Sequence[Claimed]) -> None:
        """Messages already claimed by the transaction that queued them (committed): sent
        before anything else, with no claim of their own (ADR 23). Only for a sender whose
        background loop runs (``start_background``): ``drain`` sends them too, but nothing
        else would call it."""
        self._handed.extend(items)
        if self._stop.is_set():  # stopped meanwhile: nobody will send them here
            self._release_handed()
        else:
            self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)
        self._release_handed()

    def _release_handed(self) -> None:
        """Messages handed over and not sent (the hub is stopping) go back to ``queued``: the
        next sender sends them at once instead of after ``stuck_after_s``."""
        items = list(iter(self._pop_handed, None))
        if not items:
            return
        now = self._clock.now()
        with self._session_factory() as session, session.begin():
            session.execute(
                update(Notification)
                .where(Notification.id.in_([item.id for item in items]))
                .where(Notification.status == "sending")
                .values(
                    status="queued",
                    attempts=Notification.attempts - 1,
                    next_attempt_at=now,
                    updated_at=now,
                )
            )
        logger.info("sender stopping: %d handed-over message(s) queued again", len(items))

    def _loop(self, poll_s: float) -> None:
        while not self._stop.is_set():
            try:
                self.drain()
            except Exception:
                logger.exception("outbox drain failed; retrying")
            self._wake.wait(poll_s)
            self._wake.clear()

    # -- the work -------------------------------------------------------------------------------
    def drain(self) -> int:
        """Send everything due; returns how many provider calls were made.

        What was handed over goes first, then what is queued; the housekeeping (requeueing
        what a dead sender left, voice fallbacks for red SMS that did not get through) comes
        after it, and what it queues is sent in the same drain. A fall's first SMS, handed over
        or woken by the commit that queued it, so waits for no housekeeping reads."""
        with self._lock:
            total = self._send_handed()
            total += self._send_due()
            if self._housekeeping():
                total += self._send_due()
            return total

    def _send_handed(self) -> int:
        total = 0
        while not self._stop.is_set():
            item = self._pop_handed()
            if item is None:
                break
            self._send(item)
            total += 1
        return total

    def _pop_handed(self) -> Claimed | None:
        try:
            return self._handed.popleft()
        except IndexError:
            return None

    def _send_due(self) -> int:
        total = 0
        for _round in range(1000):
            claimed = self._claim()
            for item in claimed:
                self._send(item)
            total += len(claimed)
            if len(claimed) < CLAIM_BATCH:
                break
        return total

    def _claim(self) -> list[Claimed]:
        now = self._clock.now()
        with self._session_factory() as session, session.begin():
            query = (
                select(Notification)
                .where(
                    Notification.status == "queued",
                    Notification.next_attempt_at <= now,
                    Notification.channel.in_(("sms", "voice")),
                )
                .order_by(Notification.next_attempt_at, Notification.id)
                .limit(CLAIM_BATCH)
            )
            if session.get_bind().dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            out = []
            for row in session.scalars(query).all():
                row.status = "sending"
                row.attempts += 1
                row.updated_at = now
                out.append(
                    Claimed(
                        row.id,
                        row.alarm_id,
                        row.channel,
                        row.to_number or "",
                        row.body,
                        row.attempts,
                    )
                )
            return out

    def _send(self, item: Claimed) -> None:
        # the notification's id in the URL: its receipts count even when they come before the
        # commit below has recorded the provider's sid (hub.notify.replies.apply_status)
        callback = f"{self._base}/api/v1/twilio/status/{item.id}"
        error: ProviderError | None = None
        sid: str | None = None
        try:
            if item.channel == "sms":
                sid = self._provider.send_sms(
                    to=item.to_number, body=item.body, status_callback=callback
                )
            else:
                sid = self._provider.start_call(
                    to=item.to_number,
                    twiml_url=f"{self._base}/api/v1/twilio/voice/{item.id}",
                    status_callback=callback,
                )
        except ProviderError as exc:
            error = exc
        now = self._clock.now()
        with self._session_factory() as session, session.begin():
            row = session.get(Notification, item.id)
            if row is None:
                return
            detail: dict[str, Any] = {
                "notification_id": item.id,
                "channel": item.channel,
                "attempt": item.attempts,
            }
            if sid is not None:
                if row.status == "sending":  # a fast status callback may have moved it on
                    row.status = "sent"
                    row.last_error = None  # an earlier attempt's; a receipt's error is kept
                row.provider_sid = sid
                metrics.NOTIFICATIONS_SENT.labels(channel=item.channel).inc()
                detail.update(result="accepted", sid=sid)
            else:
                assert error is not None
                row.last_error = str(error)[:2000]
                kind = "transient" if error.transient else "permanent"
                metrics.NOTIFICATION_FAILURES.labels(channel=item.channel, kind=kind).inc()
                alarm = session.get(Alarm, item.alarm_id)
                keep_trying = (
                    row.purpose in PERSISTENT_PURPOSES
                    and alarm is not None
                    and alarm.status in UNTAKEN
                ) or item.attempts < MAX_TRANSIENT_ATTEMPTS
                if error.transient and keep_trying:
                    row.status = "queued"
                    row.next_attempt_at = now + timedelta(seconds=backoff_s(item.attempts))
                    detail.update(result="retry", error=str(error)[:300])
                else:
                    row.status = "failed"
                    row.next_attempt_at = None
                    detail.update(result="failed", error=str(error)[:300])
                    self.maybe_fallback(session, row, now, reason="SMS could not be sent")
                logger.warning("notification %s: %s (%s)", item.id, detail["result"], error)
            row.updated_at = now
            alarms.add_note(
                session,
                item.alarm_id,
                now=now,
                actor="hub:sender",
                kind="notification_attempt",
                detail=detail,
            )

    def next_due(self) -> datetime | None:
        """When the earliest queued message is due (for timers and tests)."""
        with self._session_factory() as session:
            return session.scalar(
                select(func.min(Notification.next_attempt_at)).where(
                    Notification.status == "queued"
                )
            )

    def _housekeeping(self) -> bool:
        """Requeue rows a dead process left in 'sending'; voice fallback for slow red SMS.
        Returns whether it queued anything."""
        queued = False
        now = self._clock.now()
        with self._session_factory() as session, session.begin():
            stuck = session.scalars(
                select(Notification).where(
                    Notification.status == "sending",
                    Notification.updated_at <= now - self._stuck_after,
                )
            ).all()
            for row in stuck:
                queued = True
                row.status = "queued"
                row.next_attempt_at = now
                row.updated_at = now
                row.last_error = "requeued: a sender stopped while sending (possible duplicate)"
                alarms.add_note(
                    session,
                    row.alarm_id,
                    now=now,
                    actor="hub:sender",
                    kind="notification_attempt",
                    detail={"notification_id": row.id, "result": "requeued_after_crash"},
                )
            slow = session.scalars(
                select(Notification)
                .join(Alarm, Alarm.id == Notification.alarm_id)
                .where(
                    Notification.channel == "sms",
                    Notification.purpose == "alarm",
                    Notification.recipient_kind == "staff",
                    or_(
                        Notification.status.in_(("undelivered", "failed")),
                        and_(
                            Notification.status == "sent",
                            Notification.updated_at <= now - self._red_timeout,
                        ),
                    ),
                    Alarm.severity == Severity.RED,
                    Alarm.status.in_(UNTAKEN),
                )
                .limit(100)
            ).all()
            for row in slow:
                call = self.maybe_fallback(
                    session, row, now, reason="SMS not delivered (" + row.status + ")"
                )
                queued = queued or call is not None
        return queued

    def maybe_fallback(
        self, session: Session, sms: Notification, now: datetime, *, reason: str
    ) -> Notification | None:
        """Queue one voice call for a red, untaken alarm whose SMS did not get through."""
        if sms.channel != "sms" or sms.purpose != "alarm" or sms.recipient_kind != "staff":
            return None
        alarm = session.get(Alarm, sms.alarm_id)
        if alarm is None or alarm.severity != Severity.RED or alarm.status not in UNTAKEN:
            return None
        if session.scalar(select(Notification.id).where(Notification.fallback_for_id == sms.id)):
            return None
        from hub.escalation.engine import voice_recipient_text

        user = session.get(StaffUser, sms.recipient_id)
        language = user.language if user is not None else "nb"
        call = Notification(
            alarm_id=alarm.id,
            channel="voice",
            purpose="fallback",
            recipient_kind=sms.recipient_kind,
            recipient_id=sms.recipient_id,
            to_number=sms.to_number,
            body=voice_recipient_text(session, alarm, language),
            status="queued",
            attempts=0,
            next_attempt_at=now,
            step_index=sms.step_index,
            round=sms.round,
            fallback_for_id=sms.id,
            created_at=now,
            updated_at=now,
        )
        session.add(call)
        session.flush()
        alarms.add_note(
            session,
            alarm.id,
            now=now,
            actor="hub:sender",
            kind="notification",
            detail={
                "notification_id": call.id,
                "channel": "voice",
                "purpose": "fallback",
                "reason": reason,
                "fallback_for": sms.id,
            },
        )
        self.wake()
        return call


__all__ = ["Provider", "ProviderError", "Sender", "TwilioProvider", "backoff_s"]
