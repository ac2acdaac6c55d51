"""The one source of time: system, fake (tests) and scaled (demo) clocks.

Nothing outside this module calls ``datetime.now()`` or ``time.time()``.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Wall-clock time (timezone-aware UTC) plus a monotonic reading for durations."""

    def now(self) -> datetime:
        """Current time, timezone-aware, in UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards (for measuring intervals)."""
        ...


class SystemClock:
    """The real time."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()


class FakeClock:
    """A clock that only moves when a test says so."""

    def __init__(self, start: datetime | None = None) -> None:
        if start is None:
            start = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
        if start.tzinfo is None:
            raise ValueError("FakeClock needs a timezone-aware start time")
        self._now = start.astimezone(UTC)
        self._mono = 0.0
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def monotonic(self) -> float:
        with self._lock:
            return self._mono

    def advance(self, delta: timedelta | float) -> datetime:
        """Move time forward by a timedelta or a number of seconds; returns the new time."""
        seconds = delta.total_seconds() if isinstance(delta, timedelta) else float(delta)
        if seconds < 0:
            raise ValueError("time never goes backwards")
        with self._lock:
            self._now += timedelta(seconds=seconds)
            self._mono += seconds
            return self._now

    def set(self, when: datetime) -> None:
        """Jump to an absolute time that is not earlier than now."""
        when = when.astimezone(UTC)
        with self._lock:
            if when < self._now:
                raise ValueError("time never goes backwards")
            self._mono += (when - self._now).total_seconds()
            self._now = when


class ScaledClock:
    """Runs ``speed`` times faster than real time from a chosen start (for demos)."""

    def __init__(self, speed: float, start: datetime | None = None) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.speed = speed
        self._real_start = time.monotonic()
        self._start = (start or datetime.now(UTC)).astimezone(UTC)

    def now(self) -> datetime:
        elapsed = (time.monotonic() - self._real_start) * self.speed
        return self._start + timedelta(seconds=elapsed)

    def monotonic(self) -> float:
        return (time.monotonic() - self._real_start) * self.speed


def utc(dt: datetime) -> datetime:
    """Normalise an aware datetime to UTC; refuses naive values."""
    if dt.tzinfo is None:
        raise ValueError("naive datetime: a time zone is required")
    return dt.astimezone(UTC)
