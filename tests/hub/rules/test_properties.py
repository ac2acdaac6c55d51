"""Property: any sequence of observations and due calls keeps the engine sane and quiet."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.rules.engine import evaluate_due, evaluate_observation, initial_state
from hub.rules.model import (
    AlarmType,
    ConditionCleared,
    Evaluation,
    HomeContext,
    Note,
    Observation,
    RaiseAlarm,
)
from tests.hub.rules.kari import KARI_DEVICES, home, local

START = local("2026-03-28", "20:00")  # the spring DST night is inside every run's reach
DEVICE_IDS = [d.id for d in KARI_DEVICES] + ["ghost"]
ONCE_PER_CONDITION = (AlarmType.DEVICE_OFFLINE, AlarmType.LOW_BATTERY, AlarmType.TAMPER)

data_values = st.one_of(
    st.booleans(), st.integers(-5, 120), st.floats(allow_nan=True), st.text(max_size=3), st.none()
)
observation_data = st.fixed_dictionaries(
    {},
    optional={
        "open": st.booleans(),
        "motion": st.booleans(),
        "action": st.sampled_from(["press", "cancel", "dance"]),
        "fall_state": st.sampled_from(["fall", "maybe_fall", "none"]),
        "confidence": st.floats(0, 1),
        "battery": st.integers(0, 100) | data_values,
        "tamper": st.booleans(),
        "online": st.booleans(),
        "junk": data_values,
    },
)
step = st.one_of(
    st.tuples(
        st.just("obs"),
        st.integers(0, 4 * 3600),
        st.sampled_from(DEVICE_IDS),
        st.sampled_from(["fall", "door", "motion", "button", "status", "odd"]),
        observation_data,
    ),
    st.tuples(st.just("timer"), st.integers(0, 8 * 3600)),  # a perfect timer runs until then
    st.tuples(st.just("late"), st.integers(0, 30 * 3600)),  # the hub was down, one late call
)


@st.composite
def contexts(draw: st.DrawFn) -> HomeContext:
    devices = tuple(
        replace(
            d,
            test_mode_until=draw(st.sampled_from([None, START + timedelta(hours=3)])),
            battery=draw(st.sampled_from([None, 10, 50])),
            online=draw(st.sampled_from([None, True, False])),
        )
        for d in KARI_DEVICES
    )
    absence = draw(st.sampled_from([None, START + timedelta(hours=5), START - timedelta(days=1)]))
    return home(
        devices,
        absence_until=absence,
        inactivity_stopwatch_s=draw(st.sampled_from([3600, 12 * 3600])),
        inactivity_prealarm_s=draw(st.sampled_from([0, 300, 7200])),
        inactivity_window_enabled=draw(st.booleans()),
        door_grace_s=draw(st.sampled_from([0, 600])),
        fall_min_confidence=draw(st.sampled_from([None, 0.5])),
    )


class Checker:
    """Applies evaluations and checks every invariant on the way."""

    def __init__(self, ctx: HomeContext) -> None:
        self.ctx = ctx
        self.state: dict[str, Any] = initial_state()
        self.next_due: datetime | None = None
        self.open: set[tuple[AlarmType, str | None]] = set()

    def take(self, result: Evaluation, now: datetime) -> None:
        assert json.loads(json.dumps(result.state)) == result.state
        # observations here are evaluated at their own time, so nothing is ever left due now
        assert result.next_due_at is None or result.next_due_at > now
        for decision in result.decisions:
            assert not (isinstance(decision, Note) and "internal error" in decision.text)
            if isinstance(decision, RaiseAlarm) and decision.type in ONCE_PER_CONDITION:
                key = (decision.type, decision.device_id)
                assert key not in self.open, f"raised twice: {key}"
                self.open.add(key)
            if isinstance(decision, ConditionCleared):
                self.open.discard((decision.type, decision.device_id))
        self.state, self.next_due = result.state, result.next_due_at

    def due(self, now: datetime) -> None:
        again = evaluate_due(self.ctx, self.state, now)
        assert again == evaluate_due(self.ctx, json.loads(json.dumps(self.state)), now)
        self.take(again, now)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ctx=contexts(), steps=st.lists(step, max_size=40))
def test_random_days_never_break_the_rules(ctx: HomeContext, steps: list[tuple[Any, ...]]) -> None:
    check = Checker(ctx)
    now = START
    for item in steps:
        now += timedelta(seconds=item[1])
        if item[0] == "obs":
            _, _, device_id, kind, data = item
            if check.next_due is not None and check.next_due <= now:
                check.due(now)  # the adapter's timer would have run by now (late is fine)
            obs = Observation(device_id=device_id, kind=kind, at=now, data=data)
            check.take(evaluate_observation(ctx, check.state, obs, now), now)
        elif item[0] == "timer":
            while check.next_due is not None and check.next_due <= now:
                check.due(check.next_due)
        else:
            check.due(now)
