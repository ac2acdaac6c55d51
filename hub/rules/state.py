"""The rules' per-resident state: a typed view over the JSON document kept in ``rule_states``.

``load`` never raises: a missing or malformed field falls back to its default (and is reported),
so a damaged row cannot stop the rules. ``dump`` writes only JSON types (datetimes as ISO 8601
UTC strings, days as ``YYYY-MM-DD``). Unknown top-level keys (e.g. the adapter's ``_prealarm``)
are kept as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

VERSION = 1


def to_utc(value: datetime) -> datetime:
    """An aware datetime in UTC; a naive one is taken to be UTC already (never raises)."""
    tz = value.tzinfo
    if tz is UTC:
        return value
    if tz is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _dt(raw: Any) -> datetime | None:
    if not isinstance(raw, str):
        return None
    try:
        return to_utc(datetime.fromisoformat(raw))
    except ValueError:
        return None


def _day(raw: Any) -> date | None:
    if not isinstance(raw, str):
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        return None


# The ISO texts of times dumped lately. A state is dumped after every observation and most of
# its times (a device's last news, the activity watch) are the same as at the previous dump;
# ``isoformat`` of an aware time costs about 0.8 µs, a look-up 0.03 µs. Equal times are the
# same instant, and an instant has one UTC text, so an entry can never be wrong.
_ISO_MEMO: dict[datetime, str] = {}
_ISO_MEMO_MAX = 100_000


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    text = _ISO_MEMO.get(value)
    if text is None:
        if len(_ISO_MEMO) >= _ISO_MEMO_MAX:
            _ISO_MEMO.clear()
        text = _ISO_MEMO[value] = to_utc(value).isoformat()
    return text


def _str(raw: Any) -> str | None:
    return raw if isinstance(raw, str) else None


def _dict(raw: Any) -> dict[str, Any]:
    return raw if isinstance(raw, dict) else {}


@dataclass(slots=True)
class DoorPending:
    """A door opened at night; the resident has until ``due_at`` to be back."""

    opened_at: datetime
    due_at: datetime
    device_id: str
    closed: bool = False
    # event times (the device's clock, see engine._event_time) of the close that counts and of
    # the latest motion inside: motion after the close is back, in whichever order they arrive
    closed_at: datetime | None = None
    inside_at: datetime | None = None

    def dump(self) -> dict[str, Any]:
        return {
            "opened_at": _iso(self.opened_at),
            "due_at": _iso(self.due_at),
            "device_id": self.device_id,
            "closed": self.closed,
            "closed_at": _iso(self.closed_at),
            "inside_at": _iso(self.inside_at),
        }

    @staticmethod
    def load(raw: Any) -> DoorPending | None:
        d = _dict(raw)
        opened, due = _dt(d.get("opened_at")), _dt(d.get("due_at"))
        if opened is None or due is None:
            return None
        return DoorPending(
            opened,
            due,
            _str(d.get("device_id")) or "",
            d.get("closed") is True,
            _dt(d.get("closed_at")),
            _dt(d.get("inside_at")),
        )


@dataclass(slots=True)
class BathroomVisit:
    """A night-time bathroom visit that started at ``since``."""

    since: datetime
    due_at: datetime
    device_id: str

    def dump(self) -> dict[str, Any]:
        return {"since": _iso(self.since), "due_at": _iso(self.due_at), "device_id": self.device_id}

    @staticmethod
    def load(raw: Any) -> BathroomVisit | None:
        d = _dict(raw)
        since, due = _dt(d.get("since")), _dt(d.get("due_at"))
        if since is None or due is None:
            return None
        return BathroomVisit(since, due, _str(d.get("device_id")) or "")


@dataclass(slots=True)
class DeviceRecord:
    """What the rules remember about one device: liveness and raised conditions."""

    watch_from: datetime  # when the rules first supervised it (used while last_seen is unknown)
    alive_at: datetime | None = None  # last observation that showed it alive
    news: str | None = None  # "up" | "down": the online state its latest observation said
    offline_since: datetime | None = None  # a DEVICE_OFFLINE was raised at this time
    low_battery: bool = False
    tamper: bool = False
    # a door contact's latest event by its own time: (event time, open); a door event older than
    # it arrived late and does not change whether the door is open
    door_at: datetime | None = None
    door_open: bool | None = None

    def dump(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "watch_from": _iso(self.watch_from),
            "alive_at": _iso(self.alive_at),
            "news": self.news,
            "offline_since": _iso(self.offline_since),
            "low_battery": self.low_battery,
            "tamper": self.tamper,
        }
        if self.door_at is not None:
            out["door"] = {"at": _iso(self.door_at), "open": self.door_open}
        return out

    @staticmethod
    def load(raw: Any, fallback: datetime) -> DeviceRecord:
        d = _dict(raw)
        news = d.get("news")
        door = _dict(d.get("door"))
        door_at, door_open = _dt(door.get("at")), door.get("open")
        return DeviceRecord(
            watch_from=_dt(d.get("watch_from")) or fallback,
            alive_at=_dt(d.get("alive_at")),
            news=news if news in ("up", "down") else None,
            offline_since=_dt(d.get("offline_since")),
            low_battery=d.get("low_battery") is True,
            tamper=d.get("tamper") is True,
            door_at=door_at,
            door_open=door_open if isinstance(door_open, bool) and door_at else None,
        )


@dataclass(slots=True)
class RulesState:
    """The whole per-resident state (see docs/rules.md for the layout)."""

    clock: datetime | None = None  # the latest time the rules have evaluated
    absent: bool = False
    button_pressed_at: datetime | None = None
    door: DoorPending | None = None
    bathroom: BathroomVisit | None = None
    watch_from: datetime | None = None  # activity rules watch from here (first obs / absence end)
    last_activity: datetime | None = None
    inactivity_fired: bool = False
    inactivity_prealarm: bool = False
    window_settled: date | None = None  # the last day whose inactivity window is decided
    window_prealarm: date | None = None  # the day whose window pre-alarm is out
    devices: dict[str, DeviceRecord] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def dump(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.extra)
        out.update(
            {
                "version": VERSION,
                "clock": _iso(self.clock),
                "absent": self.absent,
                "button": {"pressed_at": _iso(self.button_pressed_at)},
                "door": self.door.dump() if self.door else None,
                "bathroom": self.bathroom.dump() if self.bathroom else None,
                "activity": {
                    "watch_from": _iso(self.watch_from),
                    "last": _iso(self.last_activity),
                    "fired": self.inactivity_fired,
                    "prealarm": self.inactivity_prealarm,
                },
                "window": {
                    "settled": self.window_settled.isoformat() if self.window_settled else None,
                    "prealarm": self.window_prealarm.isoformat() if self.window_prealarm else None,
                },
                "devices": {k: v.dump() for k, v in sorted(self.devices.items())},
            }
        )
        return out


_KNOWN = (
    "version",
    "clock",
    "absent",
    "button",
    "door",
    "bathroom",
    "activity",
    "window",
    "devices",
)


def load(raw: Any, now: datetime) -> tuple[RulesState, list[str]]:
    """The state from its JSON document; problems found are returned, never raised."""
    problems: list[str] = []
    doc = _dict(raw)
    if raw is not None and not isinstance(raw, dict):
        problems.append("rule state was not an object; started afresh")
    if doc and doc.get("version") not in (None, VERSION):
        problems.append(f"rule state version {doc.get('version')!r} unknown; read as {VERSION}")
    activity, window, button = (
        _dict(doc.get("activity")),
        _dict(doc.get("window")),
        doc.get("button"),
    )
    devices: dict[str, DeviceRecord] = {}
    for key, value in _dict(doc.get("devices")).items():
        if isinstance(key, str):
            devices[key] = DeviceRecord.load(value, now)
    state = RulesState(
        clock=_dt(doc.get("clock")),
        absent=doc.get("absent") is True,
        button_pressed_at=_dt(_dict(button).get("pressed_at")),
        door=DoorPending.load(doc.get("door")),
        bathroom=BathroomVisit.load(doc.get("bathroom")),
        watch_from=_dt(activity.get("watch_from")),
        last_activity=_dt(activity.get("last")),
        inactivity_fired=activity.get("fired") is True,
        inactivity_prealarm=activity.get("prealarm") is True,
        window_settled=_day(window.get("settled")),
        window_prealarm=_day(window.get("prealarm")),
        devices=devices,
        extra={k: v for k, v in doc.items() if k not in _KNOWN},
    )
    return state, problems


def initial_state() -> dict[str, Any]:
    """The state of a resident the rules have never seen."""
    return RulesState().dump()
