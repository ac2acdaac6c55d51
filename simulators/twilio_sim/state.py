"""The simulator's memory: messages and calls with their status history, faults and scripts."""

from __future__ import annotations

import copy
import enum
import secrets
import threading
from dataclasses import dataclass, field
from datetime import datetime

from hub.clock import Clock
from simulators.twilio_sim.twiml import Said

FINAL_SMS_STATUSES = frozenset({"delivered", "undelivered", "failed", "received"})
FINAL_CALL_STATUSES = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})


class Kind(enum.StrEnum):
    SMS = "sms"
    CALL = "call"


class FaultMode(enum.StrEnum):
    """What an injected fault does (see docs/sms-simulator.md)."""

    HTTP_500 = "http_500"
    TIMEOUT = "timeout"
    UNDELIVERED = "undelivered"
    FAILED = "failed"
    SLOW = "slow"


# Faults answered on the REST call itself, and faults that shape the delivery afterwards.
REQUEST_FAULTS = frozenset({FaultMode.HTTP_500, FaultMode.TIMEOUT})
OUTCOME_FAULTS = frozenset({FaultMode.UNDELIVERED, FaultMode.FAILED})


def new_sid(prefix: str) -> str:
    """A Twilio-style SID: two letters and 32 hex digits."""
    return prefix + secrets.token_hex(16)


@dataclass
class StatusChange:
    status: str
    at: datetime


@dataclass
class WebhookAttempt:
    """One request the simulator made to the hub, and what came back."""

    purpose: str  # "status", "inbound", "twiml" or "gather"
    url: str
    method: str
    params: dict[str, str]
    at: datetime
    http_status: int | None = None
    error: str | None = None


@dataclass
class Record:
    """An SMS (either direction) or a voice call."""

    sid: str
    kind: Kind
    direction: str  # "outbound-api", "outbound-reply" or "inbound"
    account_sid: str
    to: str
    from_: str | None
    status: str
    date_created: datetime
    date_updated: datetime
    body: str | None = None
    messaging_service_sid: str | None = None
    status_callback: str | None = None
    status_callback_method: str = "POST"
    status_callback_events: frozenset[str] = frozenset()
    url: str | None = None
    method: str = "POST"
    inline_twiml: str | None = None
    in_reply_to: str | None = None
    date_sent: datetime | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    error_code: int | None = None
    error_message: str | None = None
    history: list[StatusChange] = field(default_factory=list)
    twiml: list[str] = field(default_factory=list)
    said: list[Said] = field(default_factory=list)
    digits: str | None = None
    webhooks: list[WebhookAttempt] = field(default_factory=list)


@dataclass
class Fault:
    """An injected failure for the next ``remaining`` requests (``None``: until cleared)."""

    id: int
    mode: FaultMode
    remaining: int | None
    to: str | None
    delay_s: float
    accept: bool


@dataclass
class Script:
    """What a simulated phone does the next time the hub texts or calls it."""

    id: int
    to: str
    kind: Kind
    reply: str | None = None
    after_s: float = 0.0
    digits: str | None = None
    answer: bool = True


class Store:
    """Thread-safe in-memory state; readers get copies, writers go through methods."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._records: dict[str, Record] = {}
        self._faults: list[Fault] = []
        self._scripts: list[Script] = []
        self._next_id = 1

    # --- records ----------------------------------------------------------------------------

    def add(self, record: Record) -> Record:
        with self._lock:
            if not record.history:
                record.history.append(StatusChange(record.status, record.date_created))
            self._records[record.sid] = record
            return copy.deepcopy(record)

    def get(self, sid: str) -> Record | None:
        with self._lock:
            record = self._records.get(sid)
            return copy.deepcopy(record) if record else None

    def all(self) -> list[Record]:
        with self._lock:
            return [copy.deepcopy(r) for r in self._records.values()]

    def clear(self) -> int:
        with self._lock:
            count = len(self._records)
            self._records.clear()
            return count

    def set_status(
        self,
        sid: str,
        status: str,
        *,
        error_code: int | None = None,
        error_message: str | None = None,
    ) -> Record | None:
        """Move a record to ``status`` (appended to its history); returns a copy, or None."""
        now = self._clock.now()
        with self._lock:
            record = self._records.get(sid)
            if record is None:
                return None
            record.status = status
            record.date_updated = now
            record.history.append(StatusChange(status, now))
            if error_code is not None:
                record.error_code = error_code
                record.error_message = error_message
            if status == "sent" and record.date_sent is None:
                record.date_sent = now
            if status == "in-progress":
                record.start_time = now
            if record.kind is Kind.CALL and status in FINAL_CALL_STATUSES:
                record.end_time = now
            return copy.deepcopy(record)

    def set_from(self, sid: str, from_: str) -> None:
        with self._lock:
            record = self._records.get(sid)
            if record is not None:
                record.from_ = from_

    def add_twiml(self, sid: str, text: str, said: tuple[Said, ...]) -> None:
        with self._lock:
            record = self._records.get(sid)
            if record is not None:
                record.twiml.append(text)
                record.said.extend(said)

    def note_error(self, sid: str, code: int, message: str) -> None:
        """Record a problem with the hub's answer (e.g. 11200 HTTP retrieval failure)."""
        with self._lock:
            record = self._records.get(sid)
            if record is not None:
                record.error_code = code
                record.error_message = message

    def set_digits(self, sid: str, digits: str) -> None:
        with self._lock:
            record = self._records.get(sid)
            if record is not None:
                record.digits = digits

    def add_webhook(self, sid: str, attempt: WebhookAttempt) -> None:
        with self._lock:
            record = self._records.get(sid)
            if record is not None:
                record.webhooks.append(attempt)

    # --- faults -----------------------------------------------------------------------------

    def add_fault(
        self,
        mode: FaultMode,
        *,
        count: int | None,
        to: str | None,
        delay_s: float,
        accept: bool,
    ) -> Fault:
        with self._lock:
            fault = Fault(self._take_id(), mode, count, to, delay_s, accept)
            self._faults.append(fault)
            return copy.copy(fault)

    def faults(self) -> list[Fault]:
        with self._lock:
            return [copy.copy(f) for f in self._faults]

    def clear_faults(self) -> int:
        with self._lock:
            count = len(self._faults)
            self._faults.clear()
            return count

    def take_fault(self, modes: frozenset[FaultMode], to: str) -> Fault | None:
        """Use up one request of the oldest active fault of ``modes`` that applies to ``to``."""
        with self._lock:
            for fault in self._faults:
                if fault.mode in modes and fault.to in (None, to):
                    if fault.remaining is not None:
                        fault.remaining -= 1
                        if fault.remaining <= 0:
                            self._faults.remove(fault)
                    return copy.copy(fault)
            return None

    # --- scripts ----------------------------------------------------------------------------

    def add_script(self, script: Script) -> Script:
        with self._lock:
            script.id = self._take_id()
            self._scripts.append(script)
            return copy.copy(script)

    def scripts(self) -> list[Script]:
        with self._lock:
            return [copy.copy(s) for s in self._scripts]

    def clear_scripts(self) -> int:
        with self._lock:
            count = len(self._scripts)
            self._scripts.clear()
            return count

    def take_script(self, kind: Kind, to: str) -> Script | None:
        """The oldest script for ``kind`` to ``to``, removed: each script is used once."""
        with self._lock:
            for script in self._scripts:
                if script.kind is kind and script.to == to:
                    self._scripts.remove(script)
                    return copy.copy(script)
            return None

    def _take_id(self) -> int:
        value = self._next_id
        self._next_id += 1
        return value
