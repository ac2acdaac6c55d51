"""Local times of day for the rules: night and morning windows in the municipality's zone.

Windows are half-open ``[start, end)`` and wrap midnight when ``end <= start``; ``start == end`` is
an empty window. A local time that does not exist (spring forward) or exists twice (fall back) is
resolved by ``zoneinfo``'s ``fold=0``: the offset before the change.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo


def in_window(moment: datetime, start: time, end: time, tz: ZoneInfo) -> bool:
    """Is ``moment``'s local time of day inside ``[start, end)``?"""
    if start == end:
        return False
    local = moment.astimezone(tz).time().replace(tzinfo=None, fold=0)
    if start < end:
        return start <= local < end
    return local >= start or local < end


def local_day(moment: datetime, tz: ZoneInfo) -> date:
    return moment.astimezone(tz).date()


def window_on(day: date, start: time, end: time, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """The window starting on local ``day``, as UTC instants (ends the next day if wrapping)."""
    end_day = day if end > start else day + timedelta(days=1)
    begin = datetime.combine(day, start.replace(tzinfo=None), tzinfo=tz).astimezone(UTC)
    finish = datetime.combine(end_day, end.replace(tzinfo=None), tzinfo=tz).astimezone(UTC)
    return begin, finish


def hhmm(moment: datetime, tz: ZoneInfo) -> str:
    return moment.astimezone(tz).strftime("%H:%M")


def duration(seconds: float) -> str:
    """A short human duration: 45 min, 12 h, 1 h 30 min, 30 s."""
    total = int(seconds)
    if total < 60:
        return f"{total} s"
    hours, minutes = divmod(total // 60, 60)
    if hours and minutes:
        return f"{hours} h {minutes} min"
    return f"{hours} h" if hours else f"{minutes} min"
