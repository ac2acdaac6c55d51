"""Pure computations of the coordinator's reports and charts: percentiles, rates, bars, CSV."""

from __future__ import annotations

import csv
import io
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final
from zoneinfo import ZoneInfo

from hub.alarms.lifecycle import Outcome
from hub.storage.models import AlarmStatus

OFFLINE_ALARM_TYPE: Final = "device_offline"
HOURS_PER_DAY: Final = 24


@dataclass(frozen=True, slots=True)
class AlarmFacts:
    """What the reports need of one alarm: when it opened, was taken, reached on site, ended."""

    id: int
    zone: str
    type: str
    status: AlarmStatus
    outcome: str | None
    opened_at: datetime
    taken_at: datetime | None  # the first transition to acknowledged
    on_site_at: datetime | None  # the first transition to on_site
    device_id: str | None = None


@dataclass(frozen=True, slots=True)
class DeviceFacts:
    """A registered device as the uptime and battery report sees it."""

    id: str
    home_id: str
    zone: str
    type: str
    online: bool | None
    battery: int | None


@dataclass(frozen=True, slots=True)
class ResponseRow:
    """Response times of one ISO week and zone, in seconds (``None``: no alarm measured)."""

    week: str
    zone: str
    taken_count: int
    taken_p50_s: float | None
    taken_p90_s: float | None
    on_site_count: int
    on_site_p50_s: float | None
    on_site_p90_s: float | None


@dataclass(frozen=True, slots=True)
class FalseAlarmRate:
    """Resolved alarms with the outcome *false alarm*, of all resolved ones."""

    false_alarms: int
    resolved: int

    @property
    def rate(self) -> float | None:
        return self.false_alarms / self.resolved if self.resolved else None


@dataclass(frozen=True, slots=True)
class DeviceRow:
    """One device's line in the uptime and battery report."""

    id: str
    home_id: str
    zone: str
    type: str
    online: bool | None
    battery: int | None
    battery_low: bool
    offline_alarms: int


@dataclass(frozen=True, slots=True)
class DeviceSummary:
    """The fleet at a glance: how many devices are online now and how many run low."""

    total: int
    online: int
    low_battery: int

    @property
    def online_share(self) -> float | None:
        return self.online / self.total if self.total else None


@dataclass(frozen=True, slots=True)
class Bar:
    """One bar of an SVG bar chart, in the chart's own coordinates."""

    label: str
    value: float
    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True, slots=True)
class BarChart:
    """Bars scaled into a ``width`` × ``height`` plot area (origin top left, like SVG)."""

    width: int
    height: int
    max_value: float
    bars: tuple[Bar, ...]


def percentile(values: Sequence[float], p: float) -> float | None:
    """The ``p``-th percentile (0–100) by linear interpolation between ranks; ``None`` if empty.

    The same definition as NumPy's default and a spreadsheet's PERCENTILE.INC: p50 of
    [10, 20, 30, 40] is 25.
    """
    if not 0 <= p <= 100:
        raise ValueError(f"percentile must be between 0 and 100, not {p}")
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low = math.floor(rank)
    high = math.ceil(rank)
    if low == high:
        return float(ordered[low])
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def iso_week(at: datetime, tz: ZoneInfo) -> str:
    """The ISO week of an instant in the municipality's zone, e.g. ``2026-W02``."""
    year, week, _ = at.astimezone(tz).isocalendar()
    return f"{year}-W{week:02d}"


def response_times(alarms: Iterable[AlarmFacts], tz: ZoneInfo) -> list[ResponseRow]:
    """Percentiles (p50, p90) of open → taken and taken → on site per ISO week and zone.

    An alarm counts in the week it opened. Alarms never taken count in neither measure; an
    alarm taken but never reached on site counts only in the first.
    """
    taken: dict[tuple[str, str], list[float]] = defaultdict(list)
    on_site: dict[tuple[str, str], list[float]] = defaultdict(list)
    keys: set[tuple[str, str]] = set()
    for alarm in alarms:
        key = (iso_week(alarm.opened_at, tz), alarm.zone)
        keys.add(key)
        if alarm.taken_at is not None:
            taken[key].append((alarm.taken_at - alarm.opened_at).total_seconds())
            if alarm.on_site_at is not None:
                on_site[key].append((alarm.on_site_at - alarm.taken_at).total_seconds())
    return [
        ResponseRow(
            week=week,
            zone=zone,
            taken_count=len(taken[(week, zone)]),
            taken_p50_s=percentile(taken[(week, zone)], 50),
            taken_p90_s=percentile(taken[(week, zone)], 90),
            on_site_count=len(on_site[(week, zone)]),
            on_site_p50_s=percentile(on_site[(week, zone)], 50),
            on_site_p90_s=percentile(on_site[(week, zone)], 90),
        )
        for week, zone in sorted(keys)
    ]


def alarms_by_type(alarms: Iterable[AlarmFacts]) -> list[tuple[str, int]]:
    """How many alarms of each type, most frequent first (ties by type name)."""
    counts = Counter(alarm.type for alarm in alarms)
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def false_alarm_rate(alarms: Iterable[AlarmFacts]) -> FalseAlarmRate:
    """Resolved with outcome *false alarm* out of all resolved (cancelled ones do not count)."""
    resolved = [a for a in alarms if a.status is AlarmStatus.RESOLVED]
    false_alarms = sum(1 for a in resolved if a.outcome == Outcome.FALSE_ALARM.value)
    return FalseAlarmRate(false_alarms=false_alarms, resolved=len(resolved))


def false_alarms_by_type(alarms: Iterable[AlarmFacts]) -> list[tuple[str, FalseAlarmRate]]:
    """The false-alarm rate of each alarm type that has resolved alarms, by type name."""
    by_type: dict[str, list[AlarmFacts]] = defaultdict(list)
    for alarm in alarms:
        by_type[alarm.type].append(alarm)
    rows = [(kind, false_alarm_rate(group)) for kind, group in sorted(by_type.items())]
    return [(kind, rate) for kind, rate in rows if rate.resolved]


def device_rows(
    devices: Iterable[DeviceFacts], alarms: Iterable[AlarmFacts], *, low_battery_pct: int
) -> list[DeviceRow]:
    """Each device with its offline alarms in the period; most offline alarms first."""
    offline = Counter(
        a.device_id for a in alarms if a.type == OFFLINE_ALARM_TYPE and a.device_id is not None
    )
    rows = [
        DeviceRow(
            id=d.id,
            home_id=d.home_id,
            zone=d.zone,
            type=d.type,
            online=d.online,
            battery=d.battery,
            battery_low=d.battery is not None and d.battery < low_battery_pct,
            offline_alarms=offline.get(d.id, 0),
        )
        for d in devices
    ]
    return sorted(rows, key=lambda r: (-r.offline_alarms, r.id))


def device_summary(rows: Sequence[DeviceRow]) -> DeviceSummary:
    """Devices online now (unknown counts as not online) and devices with a low battery."""
    return DeviceSummary(
        total=len(rows),
        online=sum(1 for r in rows if r.online is True),
        low_battery=sum(1 for r in rows if r.battery_low),
    )


def motion_by_hour(times: Iterable[datetime], tz: ZoneInfo) -> list[int]:
    """Motion events per local hour of the day (24 counts, index 0 = 00:00–00:59)."""
    counts = [0] * HOURS_PER_DAY
    for at in times:
        counts[at.astimezone(tz).hour] += 1
    return counts


def bar_chart(
    items: Sequence[tuple[str, float]], *, width: int = 600, height: int = 160, gap: float = 0.2
) -> BarChart:
    """Scale ``(label, value)`` pairs into bars filling ``width`` × ``height``.

    Negative values are drawn as zero; an all-zero chart has no visible bars but keeps its
    slots so the axis labels still line up.
    """
    max_value = max((max(value, 0.0) for _, value in items), default=0.0)
    slot = width / len(items) if items else float(width)
    bar_width = slot * (1 - gap)
    bars = []
    for index, (label, value) in enumerate(items):
        bar_height = height * max(value, 0.0) / max_value if max_value > 0 else 0.0
        bars.append(
            Bar(
                label=label,
                value=value,
                x=round(index * slot + (slot - bar_width) / 2, 2),
                y=round(height - bar_height, 2),
                width=round(bar_width, 2),
                height=round(bar_height, 2),
            )
        )
    return BarChart(width=width, height=height, max_value=max_value, bars=tuple(bars))


def hbar_chart(
    items: Sequence[tuple[str, float]],
    *,
    width: int = 600,
    label_width: int = 180,
    value_width: int = 70,
    row_height: int = 28,
) -> BarChart:
    """Horizontal bars (one row per item, label on the left): long labels stay readable."""
    max_value = max((max(value, 0.0) for _, value in items), default=0.0)
    plot = width - label_width - value_width
    bars = tuple(
        Bar(
            label=label,
            value=value,
            x=float(label_width),
            y=float(index * row_height + row_height * 0.15),
            width=round(plot * max(value, 0.0) / max_value, 2) if max_value > 0 else 0.0,
            height=round(row_height * 0.7, 2),
        )
        for index, (label, value) in enumerate(items)
    )
    return BarChart(
        width=width, height=max(len(items), 1) * row_height, max_value=max_value, bars=bars
    )


def format_duration(seconds: float | None) -> str:
    """A duration for people: ``45 s``, ``2 min 5 s``, ``1 h 5 min``; ``–`` for none."""
    if seconds is None:
        return "–"
    total = round(seconds)
    if total < 60:
        return f"{total} s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def to_csv(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """CSV text (RFC 4180, CRLF line ends) with a header row; ``None`` becomes an empty cell."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if cell is None else cell for cell in row])
    return buffer.getvalue()


def seconds_or_none(value: float | None) -> int | None:
    """A duration rounded to whole seconds for tables and CSV."""
    return None if value is None else round(value)
