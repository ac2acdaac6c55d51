"""The pure alarm state machine: every allowed and every refused transition, and its messages."""

from __future__ import annotations

import itertools

import pytest

from hub.alarms.lifecycle import (
    ACTIVE_STATUSES,
    TRANSITIONS,
    Outcome,
    TransitionError,
    allowed_targets,
    check_transition,
    is_active,
)
from hub.storage.models import AlarmStatus as S

# The table of docs/api.md, written out once more by hand: (from, to) without the resolve rules.
EXPECTED_MOVES = {
    (S.OPEN, S.NOTIFIED),
    (S.OPEN, S.ACKNOWLEDGED),
    (S.OPEN, S.RESOLVED),
    (S.OPEN, S.CANCELLED),
    (S.NOTIFIED, S.ACKNOWLEDGED),
    (S.NOTIFIED, S.RESOLVED),
    (S.NOTIFIED, S.CANCELLED),
    (S.ACKNOWLEDGED, S.ON_SITE),
    (S.ACKNOWLEDGED, S.RESOLVED),
    (S.ON_SITE, S.RESOLVED),
}
ALL_PAIRS = list(itertools.product(S, S))
UNTAKEN_OK = {Outcome.TECHNICAL, Outcome.TEST, Outcome.FALSE_ALARM}


def test_the_table_is_exactly_the_documented_one() -> None:
    table = {(source, target) for source, targets in TRANSITIONS.items() for target in targets}
    assert table == EXPECTED_MOVES
    assert set(TRANSITIONS) == set(S)


@pytest.mark.parametrize(
    ("current", "target"), sorted(EXPECTED_MOVES - {(s, S.RESOLVED) for s in S})
)
def test_allowed_moves_without_outcome(current: S, target: S) -> None:
    check_transition(current, target, None)


@pytest.mark.parametrize(
    ("current", "target"), [pair for pair in ALL_PAIRS if pair not in EXPECTED_MOVES]
)
def test_refused_moves_name_from_to_and_what_is_allowed(current: S, target: S) -> None:
    with pytest.raises(TransitionError) as caught:
        check_transition(current, target, Outcome.HELPED if target is S.RESOLVED else None)

    message = str(caught.value)
    assert f"from {current.value} to {target.value}" in message
    assert caught.value.current is current and caught.value.target is target
    if allowed_targets(current):
        assert all(allowed.value in message for allowed in allowed_targets(current))
    else:
        assert f"{current.value} is final" in message


@pytest.mark.parametrize("outcome", list(Outcome))
@pytest.mark.parametrize("current", [S.ACKNOWLEDGED, S.ON_SITE])
def test_a_taken_alarm_resolves_with_any_outcome(current: S, outcome: Outcome) -> None:
    check_transition(current, S.RESOLVED, outcome)
    check_transition(current, S.RESOLVED, outcome.value)  # a plain string works too


@pytest.mark.parametrize("outcome", list(Outcome))
@pytest.mark.parametrize("current", [S.OPEN, S.NOTIFIED])
def test_an_untaken_alarm_resolves_only_as_technical_test_or_false_alarm(
    current: S, outcome: Outcome
) -> None:
    if outcome in UNTAKEN_OK:
        check_transition(current, S.RESOLVED, outcome)
        return
    with pytest.raises(TransitionError) as caught:
        check_transition(current, S.RESOLVED, outcome)
    message = str(caught.value)
    assert f"from {current.value} to resolved with outcome {outcome.value}" in message
    assert "acknowledge it first" in message
    assert "technical" in message and "test" in message and "false_alarm" in message


@pytest.mark.parametrize("current", [S.OPEN, S.ACKNOWLEDGED, S.ON_SITE])
def test_resolving_needs_an_outcome(current: S) -> None:
    with pytest.raises(TransitionError, match=r"needs an outcome: helped, false_alarm"):
        check_transition(current, S.RESOLVED, None)


def test_an_unknown_outcome_is_refused_with_the_valid_ones() -> None:
    with pytest.raises(TransitionError, match=r"unknown outcome 'fixed'.*helped.*test"):
        check_transition(S.ON_SITE, S.RESOLVED, "fixed")


@pytest.mark.parametrize(
    ("current", "target"), [(S.OPEN, S.ACKNOWLEDGED), (S.ACKNOWLEDGED, S.ON_SITE)]
)
def test_an_outcome_belongs_only_to_resolving(current: S, target: S) -> None:
    with pytest.raises(TransitionError, match=r"outcome is given only when resolving"):
        check_transition(current, target, "helped")


def test_cancel_is_only_possible_before_anyone_has_taken_the_alarm() -> None:
    check_transition(S.OPEN, S.CANCELLED, None)
    check_transition(S.NOTIFIED, S.CANCELLED, None)
    for taken in (S.ACKNOWLEDGED, S.ON_SITE):
        with pytest.raises(TransitionError, match=f"from {taken.value} to cancelled"):
            check_transition(taken, S.CANCELLED, None)


def test_transition_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        check_transition(S.RESOLVED, S.OPEN, None)


def test_active_statuses() -> None:
    assert {status for status in S if is_active(status)} == ACTIVE_STATUSES
    assert not is_active(S.RESOLVED) and not is_active(S.CANCELLED)
    assert allowed_targets(S.ON_SITE) == (S.RESOLVED,)
    assert allowed_targets(S.CANCELLED) == ()
