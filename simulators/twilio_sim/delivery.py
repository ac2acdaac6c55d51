"""Background delivery: signed status callbacks, inbound webhooks and call TwiML, with delays."""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import uuid
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import httpx

from hub.clock import Clock
from simulators.twilio_sim import twiml
from simulators.twilio_sim.config import SimConfig
from simulators.twilio_sim.resources import API_VERSION, num_segments, rfc2822
from simulators.twilio_sim.signing import SIGNATURE_HEADER, signature
from simulators.twilio_sim.state import (
    OUTCOME_FAULTS,
    Fault,
    FaultMode,
    Kind,
    Record,
    Script,
    Store,
    WebhookAttempt,
    new_sid,
)

logger = logging.getLogger(__name__)

USER_AGENT = "TwilioProxy/1.1"

# Twilio error codes the simulator reports.
ERROR_UNREACHABLE = (30003, "Unreachable destination handset")
ERROR_UNKNOWN = (30008, "Unknown error")
ERROR_HTTP_RETRIEVAL = (11200, "HTTP retrieval failure")
ERROR_DOCUMENT_PARSE = (12100, "Document parse failure")

# A call status → the StatusCallbackEvent that asks for it (every final status is "completed").
_CALL_EVENT = {"initiated": "initiated", "ringing": "ringing", "in-progress": "answered"}


@dataclass(frozen=True)
class HubAnswer:
    """What the hub answered to one webhook (``status`` is None when it could not be reached)."""

    status: int | None
    body: str
    content_type: str | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass(frozen=True)
class InboundResult:
    """An inbound SMS handed to the hub, its answer, and the SIDs of any TwiML replies."""

    sid: str
    answer: HubAnswer
    replies: tuple[str, ...]


def is_http_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


class Delivery:
    """Runs each message's and call's life in the background, the way Twilio's network would."""

    def __init__(self, config: SimConfig, store: Store, clock: Clock) -> None:
        self._config = config
        self._store = store
        self._clock = clock
        self._client: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._client = httpx.AsyncClient(
            timeout=self._config.webhook_timeout_s, follow_redirects=False
        )

    async def stop(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    @property
    def pending(self) -> int:
        """Deliveries still running."""
        return len(self._tasks)

    # --- entry points (called from request handlers, on the event loop) ----------------------

    def start_sms(self, sid: str) -> None:
        """Take this message's faults and script now, then deliver it in the background."""
        record = self._store.get(sid)
        if record is None:
            return
        outcome: Fault | None = None
        slow = 0.0
        if record.direction == "outbound-api":
            outcome = self._store.take_fault(OUTCOME_FAULTS, record.to)
            slow = self._slow_delay(record.to)
        script = self._store.take_script(Kind.SMS, record.to)
        self._spawn(self._deliver_sms(sid, outcome, slow, script))

    def start_call(self, sid: str) -> None:
        """Take this call's faults and script now, then place it in the background."""
        record = self._store.get(sid)
        if record is None:
            return
        failed = self._store.take_fault(frozenset({FaultMode.FAILED}), record.to)
        slow = self._slow_delay(record.to)
        script = self._store.take_script(Kind.CALL, record.to)
        self._spawn(self._place_call(sid, failed is not None, slow, script))

    async def receive_sms(self, from_: str, to: str, body: str) -> InboundResult:
        """A phone texts the hub: post the signed inbound webhook and act on a TwiML reply."""
        config = self._config
        now = self._clock.now()
        sid = new_sid("SM")
        self._store.add(
            Record(
                sid=sid,
                kind=Kind.SMS,
                direction="inbound",
                account_sid=config.account_sid,
                to=to,
                from_=from_,
                status="received",
                date_created=now,
                date_updated=now,
                body=body,
                url=config.inbound_sms_url,
            )
        )
        params = {
            "AccountSid": config.account_sid,
            "ApiVersion": API_VERSION,
            "Body": body,
            "From": from_,
            "MessageSid": sid,
            "NumMedia": "0",
            "NumSegments": str(num_segments(body)),
            "SmsMessageSid": sid,
            "SmsSid": sid,
            "SmsStatus": "received",
            "To": to,
        }
        answer = await self._request("inbound", sid, "POST", config.inbound_sms_url, params)
        replies: list[str] = []
        if answer.ok and twiml.looks_like_twiml(answer.body):
            try:
                document = twiml.parse(answer.body)
            except twiml.TwimlError as exc:
                self._store.note_error(sid, ERROR_DOCUMENT_PARSE[0], str(exc))
            else:
                self._store.add_twiml(sid, answer.body, ())
                for reply in document.replies:
                    replies.append(self._reply(sid, from_, to, reply))
        return InboundResult(sid=sid, answer=answer, replies=tuple(replies))

    # --- SMS ----------------------------------------------------------------------------------

    def _reply(self, inbound_sid: str, phone: str, hub_number: str, reply: twiml.Reply) -> str:
        """A <Message> in the hub's answer becomes an outbound SMS, as Twilio sends it."""
        now = self._clock.now()
        callback = urljoin(self._config.inbound_sms_url, reply.action) if reply.action else None
        sid = new_sid("SM")
        self._store.add(
            Record(
                sid=sid,
                kind=Kind.SMS,
                direction="outbound-reply",
                account_sid=self._config.account_sid,
                to=reply.to or phone,
                from_=reply.from_ or hub_number,
                status="queued",
                date_created=now,
                date_updated=now,
                body=reply.body,
                status_callback=callback,
                in_reply_to=inbound_sid,
            )
        )
        self.start_sms(sid)
        return sid

    async def _deliver_sms(
        self, sid: str, outcome: Fault | None, slow: float, script: Script | None
    ) -> None:
        record = self._store.get(sid)
        if record is None:
            return
        if record.status == "accepted":  # a Messaging Service picks a sender first
            await self._pause()
            self._store.set_status(sid, "queued")
        await self._pause(slow)
        if record.from_ is None:
            self._store.set_from(sid, self._config.service_number)
        self._store.set_status(sid, "sending")
        await self._pause(slow)
        if outcome is not None and outcome.mode is FaultMode.FAILED:
            await self._sms_status(sid, "failed", ERROR_UNKNOWN)
            return
        await self._sms_status(sid, "sent")
        await self._pause(slow)
        if outcome is not None and outcome.mode is FaultMode.UNDELIVERED:
            await self._sms_status(sid, "undelivered", ERROR_UNREACHABLE)
            return
        delivered = await self._sms_status(sid, "delivered")
        if script is not None and script.reply is not None and delivered is not None:
            await asyncio.sleep(script.after_s)
            await self.receive_sms(
                from_=delivered.to,
                to=delivered.from_ or self._config.service_number,
                body=script.reply,
            )

    async def _sms_status(
        self, sid: str, status: str, error: tuple[int, str] | None = None
    ) -> Record | None:
        code, message = error if error else (None, None)
        record = self._store.set_status(sid, status, error_code=code, error_message=message)
        if record is None or not record.status_callback:
            return record
        params = {
            "AccountSid": record.account_sid,
            "ApiVersion": API_VERSION,
            "From": record.from_ or "",
            "MessageSid": sid,
            "MessageStatus": status,
            "SmsSid": sid,
            "SmsStatus": status,
            "To": record.to,
        }
        if record.messaging_service_sid:
            params["MessagingServiceSid"] = record.messaging_service_sid
        if code is not None:
            params["ErrorCode"] = str(code)
        await self._request(
            "status", sid, record.status_callback_method, record.status_callback, params
        )
        return record

    # --- calls --------------------------------------------------------------------------------

    async def _place_call(self, sid: str, failed: bool, slow: float, script: Script | None) -> None:
        sequence = itertools.count()
        await self._pause()
        await self._call_status(sid, "initiated", sequence)
        await self._pause()
        await self._call_status(sid, "ringing", sequence)
        await self._pause(slow)
        if failed:
            await self._call_status(sid, "failed", sequence)
            return
        if script is not None and not script.answer:
            await self._call_status(sid, "no-answer", sequence)
            return
        await self._call_status(sid, "in-progress", sequence)
        document = await self._fetch_twiml(sid)
        digits = script.digits if script is not None else None
        if document is not None and document.gather is not None and digits:
            await self._pause()
            await self._press(sid, document.gather, digits)
        # Without digits the <Gather> times out; what follows it (a <Redirect>) is not followed.
        await self._pause(slow)
        await self._call_status(sid, "completed", sequence)

    def _call_params(self, record: Record, status: str) -> dict[str, str]:
        return {
            "AccountSid": record.account_sid,
            "ApiVersion": API_VERSION,
            "CallSid": record.sid,
            "CallStatus": status,
            "Called": record.to,
            "Caller": record.from_ or "",
            "Direction": record.direction,
            "From": record.from_ or "",
            "To": record.to,
        }

    async def _call_status(self, sid: str, status: str, sequence: Iterator[int]) -> None:
        record = self._store.set_status(sid, status)
        if record is None or not record.status_callback:
            return
        event = _CALL_EVENT.get(status, "completed")
        if event not in record.status_callback_events:
            return
        params = self._call_params(record, status)
        params["CallbackSource"] = "call-progress-events"
        params["SequenceNumber"] = str(next(sequence))
        params["Timestamp"] = rfc2822(self._clock.now()) or ""
        if event == "completed":
            seconds = 0
            if record.start_time is not None and record.end_time is not None:
                seconds = max(0, round((record.end_time - record.start_time).total_seconds()))
            params["CallDuration"] = str(seconds)
            params["Duration"] = str(math.ceil(seconds / 60))
        await self._request(
            "status", sid, record.status_callback_method, record.status_callback, params
        )

    async def _fetch_twiml(self, sid: str) -> twiml.Document | None:
        record = self._store.get(sid)
        if record is None:
            return None
        if record.inline_twiml is not None:
            text = record.inline_twiml
        else:
            assert record.url is not None
            params = self._call_params(record, "in-progress")
            answer = await self._request("twiml", sid, record.method, record.url, params)
            if not answer.ok:
                self._store.note_error(sid, *ERROR_HTTP_RETRIEVAL)
                return None
            text = answer.body
        return self._read_twiml(sid, text)

    async def _press(self, sid: str, gather: twiml.Gather, digits: str) -> None:
        record = self._store.get(sid)
        if record is None:
            return
        action = urljoin(record.url, gather.action or "") if record.url else gather.action
        if not action or not is_http_url(action):
            self._store.note_error(sid, ERROR_HTTP_RETRIEVAL[0], "no absolute <Gather> action")
            return
        self._store.set_digits(sid, digits)
        params = self._call_params(record, "in-progress")
        params["Digits"] = digits
        params["FinishedOnKey"] = ""
        answer = await self._request("gather", sid, gather.method, action, params)
        if not answer.ok:
            self._store.note_error(sid, *ERROR_HTTP_RETRIEVAL)
            return
        self._read_twiml(sid, answer.body)

    def _read_twiml(self, sid: str, text: str) -> twiml.Document | None:
        try:
            document = twiml.parse(text)
        except twiml.TwimlError as exc:
            self._store.add_twiml(sid, text, ())
            self._store.note_error(sid, ERROR_DOCUMENT_PARSE[0], str(exc))
            return None
        self._store.add_twiml(sid, text, document.said)
        return document

    # --- plumbing -----------------------------------------------------------------------------

    async def _request(
        self, purpose: str, sid: str, method: str, url: str, params: dict[str, str]
    ) -> HubAnswer:
        """One signed webhook to the hub, recorded on the record, as Twilio would make it."""
        method = method.upper()
        headers = {
            "User-Agent": USER_AGENT,
            "I-Twilio-Idempotency-Token": str(uuid.uuid4()),
        }
        if method == "GET":
            url = url + ("&" if urlsplit(url).query else "?") + urlencode(params)
            headers[SIGNATURE_HEADER] = signature(self._config.auth_token, url, {})
        else:
            headers[SIGNATURE_HEADER] = signature(self._config.auth_token, url, params)
        attempt = WebhookAttempt(
            purpose=purpose, url=url, method=method, params=dict(params), at=self._clock.now()
        )
        if self._client is None:
            raise RuntimeError("the delivery worker is not started")
        try:
            if method == "GET":
                response = await self._client.get(url, headers=headers)
            else:
                response = await self._client.post(url, data=params, headers=headers)
        except httpx.HTTPError as exc:
            attempt.error = f"{type(exc).__name__}: {exc}"
            self._store.add_webhook(sid, attempt)
            logger.warning("%s webhook to %s failed: %s", purpose, url, attempt.error)
            return HubAnswer(status=None, body="", content_type=None, error=attempt.error)
        attempt.http_status = response.status_code
        self._store.add_webhook(sid, attempt)
        if response.status_code >= 400:
            logger.warning("%s webhook to %s answered %s", purpose, url, response.status_code)
        return HubAnswer(
            status=response.status_code,
            body=response.text,
            content_type=response.headers.get("content-type"),
        )

    def _slow_delay(self, to: str) -> float:
        fault = self._store.take_fault(frozenset({FaultMode.SLOW}), to)
        return fault.delay_s if fault is not None else 0.0

    async def _pause(self, extra: float = 0.0) -> None:
        await asyncio.sleep(self._config.step_delay_s + extra)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("delivery failed", exc_info=task.exception())
