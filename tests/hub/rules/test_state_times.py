"""``hub.rules.state``: how a rule state writes its times (a memo of ISO texts, bounded)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.rules import state

OSLO = ZoneInfo("Europe/Oslo")

# hypothesis takes naive bounds and puts the drawn times in the zones given
aware = st.datetimes(
    min_value=datetime(2000, 1, 1),  # noqa: DTZ001
    max_value=datetime(2100, 1, 1),  # noqa: DTZ001
    timezones=st.sampled_from([UTC, OSLO, ZoneInfo("America/New_York")]),
)


@given(aware)
def test_a_time_is_written_as_its_utc_iso_text_whichever_zone_it_came_in(value: datetime) -> None:
    """The same instant in any zone, or naive (taken as UTC), gives one text, memo or not."""
    expected = value.astimezone(UTC).isoformat()
    assert state._iso(value) == expected
    assert state._iso(value.astimezone(UTC)) == expected
    assert state._iso(value.astimezone(OSLO)) == expected  # the memo's entry, same instant
    naive = value.astimezone(UTC).replace(tzinfo=None)
    assert state._iso(naive) == expected
    assert state._iso(None) is None


def test_the_memo_of_texts_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state, "_ISO_MEMO", {})
    monkeypatch.setattr(state, "_ISO_MEMO_MAX", 10)
    start = datetime(2026, 11, 25, tzinfo=UTC)
    texts = [state._iso(start + timedelta(seconds=k)) for k in range(25)]
    assert texts == [(start + timedelta(seconds=k)).isoformat() for k in range(25)]
    assert 0 < len(state._ISO_MEMO) <= 10
