"""Timer drivers: something that calls back at a domain time. The database holds the due times.

``SchedulerTimer`` uses APScheduler 3 (the hub's single timer driver) and converts domain time
to real time for scaled clocks; ``ManualTimer`` only records what was asked (tests advance a fake
clock and run what is due themselves).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol

from apscheduler.schedulers.background import BackgroundScheduler

from hub.clock import Clock, SystemClock

logger = logging.getLogger(__name__)

JOB_ID = "rules-due"
SAFETY_JOB_ID = "rules-safety-tick"
# Instances of the wake-up job that may run (or wait for the callback's lock) at once
WAKE_INSTANCES = 4


class TimerDriver(Protocol):
    """Wakes the rules at (or soon after) a domain time."""

    def start(self, callback: Callable[[], object]) -> None: ...

    def wake_at(self, when: datetime | None) -> None: ...

    def stop(self) -> None: ...


class ManualTimer:
    """For tests: remembers the earliest wake-up asked for; nothing runs by itself."""

    def __init__(self) -> None:
        self.requested: datetime | None = None
        self.callback: Callable[[], object] | None = None

    def start(self, callback: Callable[[], object]) -> None:
        self.callback = callback

    def wake_at(self, when: datetime | None) -> None:
        self.requested = when

    def stop(self) -> None:
        self.callback = None


class SchedulerTimer:
    """One APScheduler date job, moved to the next due time, plus a slow safety tick."""

    def __init__(self, clock: Clock, safety_tick_s: float = 60.0) -> None:
        self._clock = clock
        self._real = SystemClock()
        self._safety_tick_s = safety_tick_s
        self._scheduler = BackgroundScheduler(timezone="UTC")
        self._callback: Callable[[], object] | None = None
        self._lock = threading.Lock()

    def start(self, callback: Callable[[], object]) -> None:
        self._callback = callback
        self._scheduler.start()
        self._scheduler.add_job(
            self._fire,
            "interval",
            seconds=self._safety_tick_s,
            id=SAFETY_JOB_ID,
            max_instances=1,
            coalesce=True,
        )

    def _fire(self) -> None:
        if self._callback is not None:
            try:
                self._callback()
            except Exception:
                logger.exception("timer callback failed; the safety tick retries")

    def _real_time_of(self, when: datetime) -> datetime:
        speed = float(getattr(self._clock, "speed", 1.0))
        delay = max(0.0, (when - self._clock.now()).total_seconds() / speed)
        return self._real.now() + timedelta(seconds=delay)

    def wake_at(self, when: datetime | None) -> None:
        if when is None or self._callback is None:
            return
        run_date = self._real_time_of(when)
        with self._lock:
            self._scheduler.add_job(
                self._fire,
                "date",
                run_date=run_date,
                id=JOB_ID,
                replace_existing=True,
                misfire_grace_time=None,
                # The callback moves its own wake-up before it returns. With one instance allowed,
                # a wake-up already due then met the instance still running, APScheduler skipped
                # it and dropped the date job: the next step waited for the safety tick. Callbacks
                # take their own lock (one tick, one rules run at a time), so a further instance
                # only queues behind the running one and then runs what is due.
                max_instances=WAKE_INSTANCES,
                coalesce=True,
            )

    def stop(self) -> None:
        """No more wake-ups; a callback already running (a tick in its transaction) is waited
        for, so nothing of it runs after the hub has stopped (and its engine is disposed)."""
        self._callback = None
        if self._scheduler.running:
            self._scheduler.shutdown(wait=True)
