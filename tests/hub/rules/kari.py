"""Kari's home for rules tests: her devices, a context builder, a story driver with a timer."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hub.rules.config import RuleConfig
from hub.rules.engine import evaluate_due, evaluate_observation, initial_state
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
from hub.storage.models import DeviceType

OSLO = ZoneInfo("Europe/Oslo")


def local(day: str, hhmm: str, seconds: int = 0) -> datetime:
    """An Oslo wall-clock time, e.g. local("2026-01-05", "02:10")."""
    hour, minute = (int(x) for x in hhmm.split(":"))
    y, m, d = (int(x) for x in day.split("-"))
    return datetime(y, m, d, hour, minute, seconds, tzinfo=OSLO)


def device(
    device_id: str, type_: DeviceType, room: str | None, interval_s: int = 3600, **kw: Any
) -> DeviceInfo:
    fields: dict[str, Any] = {
        "last_seen_at": None,
        "online": None,
        "battery": None,
        "tamper": None,
        "test_mode_until": None,
    }
    fields.update(kw)
    return DeviceInfo(
        id=device_id,
        type=type_,
        room_kind=room,
        supervision_interval_s=interval_s,
        **fields,
    )


KARI_DEVICES = (
    device("fall", DeviceType.FALL_SENSOR, "bedroom"),
    device("button", DeviceType.ALARM_BUTTON, "living"),
    device("door", DeviceType.DOOR_CONTACT, "entrance"),
    device("m-hall", DeviceType.MOTION_SENSOR, "entrance"),
    device("m-bath", DeviceType.MOTION_SENSOR, "bathroom"),
    device("m-bed", DeviceType.MOTION_SENSOR, "bedroom"),
    device("m-living", DeviceType.MOTION_SENSOR, "living"),
)


def home(
    devices: tuple[DeviceInfo, ...] = KARI_DEVICES,
    absence_until: datetime | None = None,
    **config: Any,
) -> HomeContext:
    return HomeContext(
        resident_id=1,
        home_id="h-kari",
        devices=devices,
        absence_until=absence_until,
        config=RuleConfig(**config),
        tz=OSLO,
    )


def hm(moment: datetime) -> str:
    return moment.astimezone(OSLO).strftime("%H:%M")


def brief(decision: Decision, at: datetime) -> tuple[Any, ...]:
    """A decision as a short comparable tuple, with the local time it was decided."""
    when = hm(at)
    match decision:
        case RaiseAlarm():
            return ("raise", decision.type.value, decision.severity.value, decision.device_id, when)
        case CancelAlarm():
            return ("cancel", decision.type.value, decision.reason, when)
        case ConditionCleared():
            return ("cleared", decision.type.value, decision.device_id, when)
        case Prealarm():
            return ("prealarm", decision.type.value, hm(decision.fires_at), when)
        case PrealarmCancelled():
            return ("prealarm_cancelled", decision.type.value, when)
        case Note():
            return ("note", decision.device_id, when)
    raise AssertionError(decision)


class Story:
    """Drives the engine like the adapter: events at ``now``, and every due time on the dot.

    With ``heartbeats`` every device (except the ``silent`` ones) was last seen at the current
    time, as the database would say for devices that send their status on time.
    """

    def __init__(self, ctx: HomeContext, start: datetime, *, heartbeats: bool = True) -> None:
        self.ctx = ctx
        self.now = start
        self.state: dict[str, Any] = initial_state()
        self.next_due: datetime | None = None
        self.heartbeats = heartbeats
        self.silent: set[str] = set()
        self.log: list[tuple[Any, ...]] = []
        self.notes: list[str] = []

    def context(self) -> HomeContext:
        if not self.heartbeats:
            return self.ctx
        devices = tuple(
            d if d.id in self.silent else replace(d, last_seen_at=self.now, online=True)
            for d in self.ctx.devices
        )
        return replace(self.ctx, devices=devices)

    def _take(
        self, result: Evaluation, at: datetime, *, due_now_ok: bool = False
    ) -> list[tuple[Any, ...]]:
        json.loads(json.dumps(result.state))  # always JSON
        assert due_now_ok or result.next_due_at is None or result.next_due_at > at
        self.state = result.state
        self.next_due = result.next_due_at
        new = [brief(d, at) for d in result.decisions]
        self.notes += [d.text for d in result.decisions if isinstance(d, Note)]
        self.log += new
        return new

    def event(self, device_id: str, kind: str, **data: Any) -> list[tuple[Any, ...]]:
        """An observation from a device, now."""
        self.run_until(self.now)
        obs = Observation(device_id=device_id, kind=kind, at=self.now, data=data)
        return self._take(evaluate_observation(self.context(), self.state, obs, self.now), self.now)

    def late_event(self, device_id: str, kind: str, at: datetime, **data: Any) -> None:
        """An observation received at ``at`` but evaluated only now (one batch, ingest lag)."""
        obs = Observation(device_id=device_id, kind=kind, at=at, data=data)
        result = evaluate_observation(self.context(), self.state, obs, self.now)
        self._take(result, self.now, due_now_ok=True)

    def run_until(self, until: datetime) -> list[tuple[Any, ...]]:
        """Time passes; the timer calls evaluate_due at each due time up to ``until``."""
        new: list[tuple[Any, ...]] = []
        while self.next_due is not None and self.next_due <= until:
            self.now = max(self.now, self.next_due)
            new += self._take(evaluate_due(self.context(), self.state, self.now), self.now)
        self.now = max(self.now, until)
        return new

    def advance(self, delta: timedelta) -> list[tuple[Any, ...]]:
        return self.run_until(self.now + delta)

    def wake_late(self, at: datetime) -> list[tuple[Any, ...]]:
        """The hub was down: nothing ran until ``at``, then one late evaluate_due."""
        self.now = at
        return self._take(evaluate_due(self.context(), self.state, at), at)

    def decisions(self, kind: str | None = None) -> list[tuple[Any, ...]]:
        return [d for d in self.log if kind is None or d[0] == kind]
