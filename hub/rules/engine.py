"""The pure alarm rules: (context, state, observation or due time, now) -> decisions.

No database, no MQTT, no clock: ``now`` is a parameter and the state is a JSON document
(``hub/rules/state.py``). Both entry points are deterministic and never raise; odd input becomes
a ``Note``. ``evaluate_observation`` fires every timer due up to the observation's own time, then
applies it; a timer that fell due between ``obs.at`` and ``now`` comes back as ``next_due_at <=
now`` (due now) so that a later observation of the same batch is applied first.
``evaluate_due`` fires everything due up to ``now``, so a late call (hub restart) fires each due
thing exactly once, at once. docs/rules.md describes every rule in plain words.

Decisions taken here:
- Absence: while ``absence_until > now`` the activity rules (door at night, bathroom,
  inactivity) do nothing and keep no timers; when absence ends inactivity counts afresh from then.
  Fall and button alarms still fire during absence (someone in the home pressed for help) and
  device supervision, battery and tamper stay on.
- Test mode: an observation from a device whose ``test_mode_until`` is after the observation's
  time is ignored by every rule, and such a device is not supervised.
- Activity (inactivity rules): ``motion=True`` from any device, any door event (open or close)
  and any button action. A fall, a status report or ``motion=False`` is not activity.
- The inactivity stopwatch starts at the first observation the rules see for the resident.
- Back after a door at night: the door closed again and, after that close, ``motion=True`` from a
  device whose room is not of kind "entrance" (unknown room counts as inside). "After" is by the
  events' own times (the devices' ``ts``, within ``MAX_EVENT_LAG`` before arrival, never after
  it; the arrival time without one), so door and motion events that arrive out of order count
  in the order they happened; a door event older than the door's latest one changes nothing.
- Bathroom: the visit is ended only by motion in a room of a known kind other than bathroom.
- Supervision: a device whose ``last_seen_at`` is unknown is counted from when the rules first
  supervised it; the offline alarm fires at ``last seen + interval + grace`` (not a tick later).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from math import isfinite
from typing import Any

from devices.catalogue import info
from hub.rules.config import RuleConfig
from hub.rules.localtime import duration, hhmm, in_window, local_day, window_on
from hub.rules.model import (
    AlarmType,
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
from hub.rules.state import (
    BathroomVisit,
    DeviceRecord,
    DoorPending,
    RulesState,
    load,
    to_utc,
)
from hub.rules.state import initial_state as _initial_state
from hub.storage.models import Severity

__all__ = ["evaluate_due", "evaluate_observation", "initial_state"]

BATTERY_HYSTERESIS_PCT = 5
CANCELLED_BY_RESIDENT = "cancelled by the resident"
RETRY_AFTER_ERROR = timedelta(minutes=1)
# a device time further back than this from the arrival is not trusted for ordering (bad clock)
MAX_EVENT_LAG = timedelta(minutes=15)


def initial_state() -> dict[str, Any]:
    """The JSON state of a resident the rules have never seen."""
    return _initial_state()


def evaluate_observation(
    ctx: HomeContext, state: dict[str, Any], obs: Observation, now: datetime
) -> Evaluation:
    """Apply one observation of the resident's home (and fire whatever became due)."""
    return _guarded(ctx, state, now, obs)


def evaluate_due(ctx: HomeContext, state: dict[str, Any], now: datetime) -> Evaluation:
    """Fire what is due at ``now`` (possibly late, after a restart): each thing exactly once."""
    return _guarded(ctx, state, now, None)


def _guarded(
    ctx: HomeContext, state: dict[str, Any], now: datetime, obs: Observation | None
) -> Evaluation:
    try:
        return _Run(ctx, state, to_utc(now)).evaluate(obs)
    except Exception as exc:  # a bug must not stop ingest: keep the state, look again soon
        fallback = state if isinstance(state, dict) else initial_state()
        return Evaluation(
            state=fallback,
            decisions=(Note(f"rules internal error, state kept: {exc!r}"),),
            next_due_at=to_utc(now) + RETRY_AFTER_ERROR,
        )


def _number(raw: Any) -> float | None:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return None
    return float(raw) if isfinite(raw) else None


def _event_time(obs: Observation, t: datetime) -> datetime:
    """When the event happened, for ordering: the device's ``ts`` if plausible, else ``t``.

    Never after ``t`` (a clock running ahead) and not more than ``MAX_EVENT_LAG`` before it (a
    clock far behind): such times fall back to ``t``, i.e. to the order of arrival.
    """
    ts = obs.ts
    if not isinstance(ts, datetime):
        return t
    ts = to_utc(ts)
    return t if ts < t - MAX_EVENT_LAG else min(ts, t)


def _in_test_mode(device: DeviceInfo, at: datetime) -> bool:
    return device.test_mode_until is not None and to_utc(device.test_mode_until) > at


def _life_safety(device: DeviceInfo) -> bool:
    try:
        return info(device.type).life_safety
    except (KeyError, ValueError):
        return False


@dataclass(slots=True)
class _Run:
    """One evaluation: the context, the state being changed and the decisions so far."""

    ctx: HomeContext
    raw: dict[str, Any]
    now: datetime
    st: RulesState = field(init=False)
    cfg: RuleConfig = field(init=False)
    out: list[Decision] = field(default_factory=list)
    telemetry_seen: set[tuple[str, str]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.cfg = self.ctx.config
        self.st, problems = load(self.raw, self.now)
        self.out.extend(Note(p) for p in problems)

    def evaluate(self, obs: Observation | None) -> Evaluation:
        # An observation advances time only to its own moment: in a batch, the next observation
        # (a little later, still before ``now``) may be the one that prevents an alarm. What
        # became due in between is returned as due now, and ``evaluate_due`` fires it.
        until = self._latest(self.now) if obs is None else self._observe(obs)
        dues = self._advance(until)
        self.st.clock = until
        return Evaluation(
            state=self.st.dump(),
            decisions=tuple(self.out),
            next_due_at=min(dues) if dues else None,
        )

    def _latest(self, moment: datetime) -> datetime:
        clock = self.st.clock
        return moment if clock is None or moment > clock else clock

    def _absent(self, at: datetime) -> bool:
        until = self.ctx.absence_until
        return until is not None and to_utc(until) > at

    # -- time ----------------------------------------------------------------------------------
    def _advance(self, t: datetime) -> list[datetime]:
        """Fire everything due at or before ``t``; returns the rules' next due times."""
        dues: list[datetime] = []
        self._absence(t, dues)
        if not self.st.absent:
            dues += self._door_due(t) + self._bathroom_due(t)
            dues += self._stopwatch_due(t) + self._window_due(t)
        dues += self._supervise(t)
        return dues

    def _absence(self, t: datetime, dues: list[datetime]) -> None:
        st = self.st
        if self._absent(t):
            if not st.absent:
                if st.inactivity_prealarm or st.window_prealarm is not None:
                    self.out.append(PrealarmCancelled(AlarmType.INACTIVITY, "absence"))
                st.absent, st.door, st.bathroom = True, None, None
                st.watch_from = st.last_activity = None
                st.inactivity_fired = st.inactivity_prealarm = False
                st.window_prealarm = None
            until = self.ctx.absence_until
            if until is not None:
                dues.append(to_utc(until))
        elif st.absent:
            until = self.ctx.absence_until
            ended = to_utc(until) if until is not None else t
            if ended > t or (st.clock is not None and ended < st.clock):
                ended = t
            st.absent, st.watch_from = False, ended

    # -- observations --------------------------------------------------------------------------
    def _observe(self, obs: Observation) -> datetime:
        """Apply one observation at its own time (never after ``now``); returns that time."""
        at = to_utc(obs.at) if isinstance(obs.at, datetime) else self.now
        happened = min(at, self.now)
        t = self._latest(happened)
        self._advance(t)
        device = self.ctx.device(obs.device_id)
        if device is None:
            self.out.append(
                Note(f"observation from unregistered device {obs.device_id}", obs.device_id)
            )
        elif _in_test_mode(device, happened):
            return t
        data = obs.data if isinstance(obs.data, dict) else {}
        if not self.st.absent and self.st.watch_from is None:
            self.st.watch_from = t
        match obs.kind:
            case "fall":
                self._fall(obs.device_id, data)
            case "button":
                self._button(obs.device_id, data, t)
            case "door":
                self._door(obs.device_id, device, data, t, happened, _event_time(obs, t))
            case "motion":
                self._motion(obs.device_id, device, data, t, happened, _event_time(obs, t))
            case "status":
                self._status(device, data, t)
            case _:
                self.out.append(Note(f"unknown observation kind {obs.kind!r}", obs.device_id))
        if device is not None:
            self._telemetry(device, obs.kind, data, t)
        return t

    def _fall(self, dev_id: str, data: dict[str, Any]) -> None:
        state = data.get("fall_state", "fall")
        if state is None:
            state = "fall"
        if state != "fall":
            self.out.append(Note(f"fall sensor reports {state!r}: recorded, no alarm", dev_id))
            return
        confidence, minimum = _number(data.get("confidence")), self.cfg.fall_min_confidence
        if confidence is not None and minimum is not None and confidence < minimum:
            self.out.append(
                Note(f"fall with confidence {confidence:.2f} under {minimum:.2f}: no alarm", dev_id)
            )
            return
        if self.cfg.fall_enabled:
            self.out.append(
                RaiseAlarm(
                    AlarmType.FALL, self.cfg.fall_severity, f"Fall reported by {dev_id}", dev_id
                )
            )

    def _button(self, dev_id: str, data: dict[str, Any], t: datetime) -> None:
        action = data.get("action")
        if action == "press":
            self._activity(t, "button press")
            if self.cfg.button_enabled:
                self.st.button_pressed_at = t
                summary = f"Alarm button pressed ({dev_id})"
                self.out.append(
                    RaiseAlarm(AlarmType.BUTTON, self.cfg.button_severity, summary, dev_id)
                )
        elif action == "cancel":
            self._activity(t, "button cancel")
            pressed = self.st.button_pressed_at
            window = timedelta(seconds=self.cfg.button_cancel_window_s)
            if pressed is not None and t - pressed <= window:
                self.st.button_pressed_at = None
                self.out.append(CancelAlarm(AlarmType.BUTTON, CANCELLED_BY_RESIDENT))
            elif pressed is None:
                self.out.append(Note("button cancel without a press: nothing to cancel", dev_id))
            else:
                self.out.append(
                    Note("button cancel after the cancel window: the alarm stays open", dev_id)
                )
        else:
            self.out.append(Note(f"button event with unknown action {action!r}", dev_id))

    def _door(
        self,
        dev_id: str,
        d: DeviceInfo | None,
        data: dict[str, Any],
        t: datetime,
        h: datetime,
        e: datetime,
    ) -> None:
        is_open = data.get("open")
        if not isinstance(is_open, bool):
            self.out.append(Note("door event without an open/closed state", dev_id))
            return
        self._activity(t, "door")
        st, cfg = self.st, self.cfg
        # the door's own events in the door's own order: one that happened before the latest
        # one seen arrived late and does not change whether the door is open
        record = self._record(dev_id, t) if d is not None else None
        later_close: datetime | None = None
        if record is not None and record.door_at is not None and e < record.door_at:
            if record.door_open is False:
                later_close = record.door_at
            stale = True
        else:
            stale = False
            if record is not None:
                record.door_at, record.door_open = e, is_open
        if st.absent:
            return
        door = st.door
        if not is_open:
            if door is not None and not stale:
                door.closed, door.closed_at = True, e
                if door.inside_at is not None and door.inside_at > e:
                    st.door = None  # motion inside after this close arrived before it: back
            return
        if door is not None:
            if not stale:
                door.closed, door.closed_at = False, None  # the original deadline stands
        elif cfg.door_night_enabled and in_window(h, cfg.night_start, cfg.night_end, self.ctx.tz):
            grace = timedelta(seconds=cfg.door_grace_s)
            st.door = DoorPending(opened_at=t, due_at=t + grace, device_id=dev_id)
            if later_close is not None:  # its close overtook it: the door is already shut
                st.door.closed, st.door.closed_at = True, later_close

    def _motion(
        self,
        dev_id: str,
        d: DeviceInfo | None,
        data: dict[str, Any],
        t: datetime,
        h: datetime,
        e: datetime,
    ) -> None:
        motion = data.get("motion")
        if not isinstance(motion, bool):
            self.out.append(Note("motion event without a motion state", dev_id))
            return
        if not motion:
            return
        self._activity(t, "motion")
        st, cfg = self.st, self.cfg
        if st.absent:
            return
        room = d.room_kind if d is not None else None
        door = st.door
        if door is not None and room != "entrance":
            if door.closed and (door.closed_at is None or e >= door.closed_at):
                st.door = None  # back in time
            elif door.inside_at is None or e > door.inside_at:
                door.inside_at = e  # a close that happened before it may still arrive
        if room == "bathroom":
            if (
                st.bathroom is None
                and cfg.bathroom_enabled
                and in_window(h, cfg.night_start, cfg.night_end, self.ctx.tz)
            ):
                due = t + timedelta(seconds=cfg.bathroom_max_s)
                st.bathroom = BathroomVisit(since=t, due_at=due, device_id=dev_id)
        elif room is not None:
            st.bathroom = None

    def _status(self, device: DeviceInfo | None, data: dict[str, Any], t: datetime) -> None:
        if device is not None and data.get("online") is False:  # the last will
            record = self._record(device.id, t)
            record.news = "down"
            self._offline_check(device, record, t)

    def _telemetry(self, device: DeviceInfo, kind: str, data: dict[str, Any], t: datetime) -> None:
        """Liveness, battery and tamper from any observation of a registered device."""
        record = self._record(device.id, t)
        if not (kind == "status" and data.get("online") is False):
            record.alive_at, record.news = t, "up"
            self._offline_check(device, record, t)
        battery = _number(data.get("battery"))
        if battery is not None:
            self.telemetry_seen.add((device.id, "battery"))
            self._battery(device.id, record, battery)
        tamper = data.get("tamper")
        if isinstance(tamper, bool):
            self.telemetry_seen.add((device.id, "tamper"))
            self._tamper(device.id, record, tamper)

    # -- activity and inactivity ---------------------------------------------------------------
    def _activity(self, t: datetime, what: str) -> None:
        st = self.st
        if st.absent:
            return
        if st.watch_from is None:
            st.watch_from = t
        st.last_activity = t
        st.inactivity_fired = False
        cancelled = st.inactivity_prealarm
        st.inactivity_prealarm = False
        settled_today = self._settle_window_for(t)
        if cancelled or settled_today:
            self.out.append(PrealarmCancelled(AlarmType.INACTIVITY, f"activity: {what}"))

    def _stopwatch_due(self, t: datetime) -> list[datetime]:
        st, cfg = self.st, self.cfg
        if not cfg.inactivity_stopwatch_enabled or st.inactivity_fired or st.watch_from is None:
            if st.inactivity_prealarm and not cfg.inactivity_stopwatch_enabled:
                st.inactivity_prealarm = False
                self.out.append(PrealarmCancelled(AlarmType.INACTIVITY, "rule switched off"))
            return []
        since = max(st.watch_from, st.last_activity or st.watch_from)
        fires = since + timedelta(seconds=cfg.inactivity_stopwatch_s)
        pre = max(since, fires - timedelta(seconds=cfg.inactivity_prealarm_s))
        if t >= fires:
            st.inactivity_fired, st.inactivity_prealarm = True, False
            summary = f"No activity for {duration(cfg.inactivity_stopwatch_s)} (since " + (
                f"{hhmm(since, self.ctx.tz)})"
            )
            self.out.append(RaiseAlarm(AlarmType.INACTIVITY, cfg.inactivity_severity, summary))
            return []
        if cfg.inactivity_prealarm_s > 0 and not st.inactivity_prealarm:
            if t >= pre:
                st.inactivity_prealarm = True
                self.out.append(Prealarm(AlarmType.INACTIVITY, fires))
            else:
                return [pre]
        return [fires]

    def _window_enabled(self) -> bool:
        cfg = self.cfg
        return cfg.inactivity_window_enabled and cfg.inactivity_window_start != (
            cfg.inactivity_window_end
        )

    def _windows(self, t: datetime) -> list[tuple[date, datetime, datetime]]:
        cfg, tz = self.cfg, self.ctx.tz
        today = local_day(t, tz)
        out = []
        for offset in (-2, -1, 0, 1):
            day = today + timedelta(days=offset)
            begin, end = window_on(day, cfg.inactivity_window_start, cfg.inactivity_window_end, tz)
            out.append((day, begin, end))
        return out

    def _settle_window_for(self, t: datetime) -> bool:
        """Activity at ``t`` settles the window it falls in; True if that cancels a pre-alarm."""
        if not self._window_enabled():
            return False
        st = self.st
        for day, begin, end in self._windows(t):
            unsettled = st.window_settled is None or day > st.window_settled
            if unsettled and begin <= t < end:
                st.window_settled = day
                if st.window_prealarm == day:
                    st.window_prealarm = None
                    return True
        return False

    def _window_due(self, t: datetime) -> list[datetime]:
        st, cfg = self.st, self.cfg
        if not self._window_enabled() or st.watch_from is None:
            return []
        prealarm = timedelta(seconds=cfg.inactivity_prealarm_s)
        for day, begin, end in self._windows(t):
            if st.window_settled is not None and day <= st.window_settled:
                continue
            pre = max(begin, end - prealarm)
            if begin > t:
                return [pre if prealarm else end]
            if st.watch_from > begin or (st.last_activity and st.last_activity >= begin):
                st.window_settled = day  # not watched for the whole window, or active in it
                continue
            if t >= end:
                st.window_settled = day
                if st.window_prealarm == day:
                    st.window_prealarm = None
                window = f"{hhmm(begin, self.ctx.tz)} and {hhmm(end, self.ctx.tz)}"
                summary = f"No activity between {window}"
                self.out.append(RaiseAlarm(AlarmType.INACTIVITY, cfg.inactivity_severity, summary))
                continue
            if prealarm and st.window_prealarm != day:
                if t >= pre:
                    st.window_prealarm = day
                    self.out.append(Prealarm(AlarmType.INACTIVITY, end))
                else:
                    return [pre]
            return [end]
        return []

    # -- door and bathroom timers --------------------------------------------------------------
    def _door_due(self, t: datetime) -> list[datetime]:
        door = self.st.door
        if door is None:
            return []
        if t < door.due_at:
            return [door.due_at]
        self.st.door = None
        tz = self.ctx.tz
        summary = (
            f"Door opened at {hhmm(door.opened_at, tz)} at night; the resident is not back "
            f"after {duration((door.due_at - door.opened_at).total_seconds())}"
        )
        self.out.append(
            RaiseAlarm(
                AlarmType.DOOR_NIGHT, self.cfg.door_severity, summary, door.device_id or None
            )
        )
        return []

    def _bathroom_due(self, t: datetime) -> list[datetime]:
        visit = self.st.bathroom
        if visit is None:
            return []
        if t < visit.due_at:
            return [visit.due_at]
        self.st.bathroom = None
        summary = (
            f"In the bathroom since {hhmm(visit.since, self.ctx.tz)}, no motion elsewhere for "
            f"{duration((visit.due_at - visit.since).total_seconds())}"
        )
        self.out.append(
            RaiseAlarm(
                AlarmType.BATHROOM_LONG,
                self.cfg.bathroom_severity,
                summary,
                visit.device_id or None,
            )
        )
        return []

    # -- devices -------------------------------------------------------------------------------
    def _record(self, dev_id: str, t: datetime) -> DeviceRecord:
        record = self.st.devices.get(dev_id)
        if record is None:
            record = self.st.devices[dev_id] = DeviceRecord(watch_from=t)
        return record

    def _supervise(self, t: datetime) -> list[datetime]:
        dues: list[datetime] = []
        known = {d.id for d in self.ctx.devices}
        for dev_id in [k for k in self.st.devices if k not in known]:
            del self.st.devices[dev_id]  # retired or moved: nothing left to supervise
        for device in self.ctx.devices:
            if device.test_mode_until is not None and _in_test_mode(device, t):
                if device.id in self.st.devices:
                    self.st.devices[device.id].news = None  # trust the database afterwards
                dues.append(to_utc(device.test_mode_until))  # supervised again from then
                continue
            record = self._record(device.id, t)
            due = self._offline_check(device, record, t)
            if due is not None:
                dues.append(due)
            if device.battery is not None and (device.id, "battery") not in self.telemetry_seen:
                value = _number(device.battery)
                if value is not None:
                    self._battery(device.id, record, value)
            if device.tamper is not None and (device.id, "tamper") not in self.telemetry_seen:
                self._tamper(device.id, record, device.tamper is True)
        return dues

    @staticmethod
    def _last_heard(device: DeviceInfo, record: DeviceRecord) -> datetime:
        seen = [to_utc(x) for x in (device.last_seen_at, record.alive_at) if x is not None]
        return max(seen) if seen else record.watch_from

    def _silent_deadline(self, device: DeviceInfo, record: DeviceRecord) -> datetime | None:
        if device.supervision_interval_s <= 0:
            return None
        allowed = device.supervision_interval_s + self.cfg.supervision_grace_s
        return self._last_heard(device, record) + timedelta(seconds=allowed)

    def _offline_check(
        self, device: DeviceInfo, record: DeviceRecord, t: datetime
    ) -> datetime | None:
        """Raise or clear DEVICE_OFFLINE for one device; returns when to look again."""
        if not self.cfg.supervision_enabled:
            return None
        down = record.news == "down" if record.news is not None else device.online is False
        deadline = self._silent_deadline(device, record)
        reason = None
        if down:
            reason = f"{device.id} reports offline"
        elif deadline is not None and t >= deadline:
            heard = hhmm(self._last_heard(device, record), self.ctx.tz)
            reason = f"{device.id} silent since {heard} (missed its supervision interval)"
        if reason is not None:
            if record.offline_since is None:
                record.offline_since = t
                severity = self._offline_severity(device, t)
                self.out.append(RaiseAlarm(AlarmType.DEVICE_OFFLINE, severity, reason, device.id))
            return None
        if record.offline_since is not None:
            record.offline_since = None
            self.out.append(
                ConditionCleared(AlarmType.DEVICE_OFFLINE, device.id, f"{device.id} is back")
            )
        return deadline

    def _offline_severity(self, device: DeviceInfo, t: datetime) -> Severity:
        """Red when no other working device of this life-safety type protects the resident."""
        if not _life_safety(device):
            return self.cfg.offline_severity
        for other in self.ctx.devices:
            if other.id == device.id or other.type != device.type or _in_test_mode(other, t):
                continue
            record = self.st.devices.get(other.id)
            if record is None or record.offline_since is None:
                return self.cfg.offline_severity
        return self.cfg.offline_life_safety_severity

    def _battery(self, dev_id: str, record: DeviceRecord, value: float) -> None:
        threshold = self.cfg.low_battery_pct
        if value < threshold and not record.low_battery:
            record.low_battery = True
            summary = f"Low battery on {dev_id} ({value:.0f} %)"
            self.out.append(
                RaiseAlarm(AlarmType.LOW_BATTERY, self.cfg.low_battery_severity, summary, dev_id)
            )
        elif record.low_battery and value >= threshold + BATTERY_HYSTERESIS_PCT:
            record.low_battery = False
            self.out.append(
                ConditionCleared(AlarmType.LOW_BATTERY, dev_id, f"battery {value:.0f} %")
            )

    def _tamper(self, dev_id: str, record: DeviceRecord, tampered: bool) -> None:
        if tampered and not record.tamper:
            record.tamper = True
            summary = f"Tamper on {dev_id}"
            self.out.append(RaiseAlarm(AlarmType.TAMPER, self.cfg.tamper_severity, summary, dev_id))
        elif not tampered and record.tamper:
            record.tamper = False
            self.out.append(ConditionCleared(AlarmType.TAMPER, dev_id, "tamper cleared"))
