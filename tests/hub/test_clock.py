"""The clocks: a fake clock that travels, a scaled clock that runs faster, aware times only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from hub.clock import FakeClock, ScaledClock, SystemClock, utc


def test_fake_clock_moves_only_when_told() -> None:
    clock = FakeClock(datetime(2026, 1, 5, 2, 10, tzinfo=UTC))
    assert clock.now() == datetime(2026, 1, 5, 2, 10, tzinfo=UTC)
    clock.advance(timedelta(hours=12))
    assert clock.now() == datetime(2026, 1, 5, 14, 10, tzinfo=UTC)
    assert clock.monotonic() == 12 * 3600


def test_fake_clock_never_goes_backwards() -> None:
    clock = FakeClock()
    with pytest.raises(ValueError):
        clock.advance(-1)
    with pytest.raises(ValueError):
        clock.set(clock.now() - timedelta(seconds=1))


def test_fake_clock_refuses_a_naive_start() -> None:
    with pytest.raises(ValueError):
        FakeClock(datetime(2026, 1, 5))  # noqa: DTZ001 - the point of the test


def test_scaled_clock_runs_faster_than_real_time() -> None:
    start = datetime(2026, 1, 5, tzinfo=UTC)
    clock = ScaledClock(3600, start=start)
    real = SystemClock()
    t0 = real.monotonic()
    while real.monotonic() - t0 < 0.01:
        pass
    assert clock.now() - start >= timedelta(seconds=36)


def test_utc_normalises_and_refuses_naive_times() -> None:
    oslo_winter = timezone(timedelta(hours=1))
    assert utc(datetime(2026, 1, 5, 3, 0, tzinfo=oslo_winter)) == datetime(
        2026, 1, 5, 2, 0, tzinfo=UTC
    )
    with pytest.raises(ValueError):
        utc(datetime(2026, 1, 5))  # noqa: DTZ001 - the point of the test
