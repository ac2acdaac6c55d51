"""Failed sign-ins: per-account lockout (pure) and a per-address sliding-window limiter."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

# Failed sign-ins one address may make in the window before it must wait.
IP_MAX_FAILURES: Final = 20
IP_WINDOW_S: Final = 10 * 60
# Addresses remembered at most (the oldest entry is dropped beyond this).
IP_MAX_TRACKED: Final = 10_000


@dataclass(frozen=True, slots=True)
class LockState:
    """An account's failed sign-ins in a row and, when locked, until when."""

    failed: int
    locked_until: datetime | None


def is_locked(state: LockState, now: datetime) -> bool:
    """Whether the account refuses sign-in at ``now``."""
    return state.locked_until is not None and state.locked_until > now


def after_failure(
    state: LockState, now: datetime, *, max_failures: int, lockout_s: int
) -> LockState:
    """The state after one more failed attempt; the ``max_failures``-th one locks for ``lockout_s``.

    A lock that has run out starts the count afresh.
    """
    failed = state.failed
    if state.locked_until is not None and state.locked_until <= now:
        failed = 0
    failed += 1
    if failed >= max_failures:
        return LockState(failed=failed, locked_until=now + timedelta(seconds=lockout_s))
    return LockState(failed=failed, locked_until=None)


def after_success() -> LockState:
    """A successful sign-in clears the count and any lock."""
    return LockState(failed=0, locked_until=None)


class AddressLimiter:
    """Failed sign-ins per client address in a sliding window, in memory (one process)."""

    def __init__(
        self,
        *,
        max_failures: int = IP_MAX_FAILURES,
        window_s: int = IP_WINDOW_S,
        max_tracked: int = IP_MAX_TRACKED,
    ) -> None:
        self._max = max_failures
        self._window = timedelta(seconds=window_s)
        self._max_tracked = max_tracked
        self._failures: dict[str, deque[datetime]] = {}
        self._lock = threading.Lock()

    def _prune(self, address: str, now: datetime) -> deque[datetime] | None:
        times = self._failures.get(address)
        if times is None:
            return None
        while times and times[0] <= now - self._window:
            times.popleft()
        if not times:
            del self._failures[address]
            return None
        return times

    def blocked(self, address: str, now: datetime) -> bool:
        """Whether ``address`` used up its failures in the window ending at ``now``."""
        with self._lock:
            times = self._prune(address, now)
            return times is not None and len(times) >= self._max

    def record_failure(self, address: str, now: datetime) -> None:
        """Count one failed sign-in from ``address`` at ``now``."""
        with self._lock:
            times = self._prune(address, now)
            if times is None:
                if len(self._failures) >= self._max_tracked:
                    del self._failures[next(iter(self._failures))]
                times = self._failures[address] = deque()
            times.append(now)
