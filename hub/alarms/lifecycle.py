"""The alarm state machine of PRODUCT.md: which status may follow which, and with what outcome.

Pure: no database, no clock. ``hub.alarms.service`` is the only code that changes an alarm's
status, and it asks ``check_transition`` first.

======================  ==============================================================
from                    allowed targets
======================  ==============================================================
open                    notified, acknowledged, resolved (*), cancelled
notified                acknowledged, resolved (*), cancelled
acknowledged            on_site, resolved
on_site                 resolved
resolved, cancelled     none: they are final
======================  ==============================================================

(*) An alarm nobody has taken (open or notified) may be resolved only with the outcome
``technical``, ``test`` or ``false_alarm``: a coordinator closing a test, a technical fault or an
obvious false alarm without driving out. The resolving transition's actor is then the person who
took it. ``helped`` and ``no_action_needed`` claim that someone attended, so they need an
acknowledged (or on-site) alarm first.

Resolving needs an outcome; no other transition takes one. Cancelling (e.g. the resident's own
cancel within the cancel window) is possible only before anyone has taken the alarm.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Final

from hub.storage.models import AlarmStatus


class Outcome(enum.StrEnum):
    """How a resolved alarm ended (VKP-aligned)."""

    HELPED = "helped"
    FALSE_ALARM = "false_alarm"
    NO_ACTION_NEEDED = "no_action_needed"
    TECHNICAL = "technical"
    TEST = "test"


INITIAL_STATUS: Final = AlarmStatus.OPEN

# Someone still has to act: an alarm in one of these statuses is shown on every board.
ACTIVE_STATUSES: Final[frozenset[AlarmStatus]] = frozenset(
    {AlarmStatus.OPEN, AlarmStatus.NOTIFIED, AlarmStatus.ACKNOWLEDGED, AlarmStatus.ON_SITE}
)
FINAL_STATUSES: Final[frozenset[AlarmStatus]] = frozenset(
    {AlarmStatus.RESOLVED, AlarmStatus.CANCELLED}
)
# Nobody has taken the alarm yet.
UNTAKEN_STATUSES: Final[frozenset[AlarmStatus]] = frozenset(
    {AlarmStatus.OPEN, AlarmStatus.NOTIFIED}
)

TRANSITIONS: Final[Mapping[AlarmStatus, frozenset[AlarmStatus]]] = {
    AlarmStatus.OPEN: frozenset(
        {
            AlarmStatus.NOTIFIED,
            AlarmStatus.ACKNOWLEDGED,
            AlarmStatus.RESOLVED,
            AlarmStatus.CANCELLED,
        }
    ),
    AlarmStatus.NOTIFIED: frozenset(
        {AlarmStatus.ACKNOWLEDGED, AlarmStatus.RESOLVED, AlarmStatus.CANCELLED}
    ),
    AlarmStatus.ACKNOWLEDGED: frozenset({AlarmStatus.ON_SITE, AlarmStatus.RESOLVED}),
    AlarmStatus.ON_SITE: frozenset({AlarmStatus.RESOLVED}),
    AlarmStatus.RESOLVED: frozenset(),
    AlarmStatus.CANCELLED: frozenset(),
}

# Outcomes that close an alarm nobody has taken (open or notified).
UNTAKEN_RESOLVE_OUTCOMES: Final[frozenset[Outcome]] = frozenset(
    {Outcome.TECHNICAL, Outcome.TEST, Outcome.FALSE_ALARM}
)

# The order in which the statuses are listed in messages (the lifecycle's own order).
_ORDER: Final[tuple[AlarmStatus, ...]] = tuple(AlarmStatus)


class TransitionError(ValueError):
    """A status change the lifecycle does not allow; the message says from, to and what is."""

    def __init__(self, current: AlarmStatus, target: AlarmStatus, message: str) -> None:
        super().__init__(message)
        self.current = current
        self.target = target


def allowed_targets(current: AlarmStatus) -> tuple[AlarmStatus, ...]:
    """The statuses ``current`` may move to, in lifecycle order (empty when final)."""
    targets = TRANSITIONS[AlarmStatus(current)]
    return tuple(status for status in _ORDER if status in targets)


def parse_outcome(outcome: str) -> Outcome:
    """``outcome`` as an ``Outcome``; a ``ValueError`` naming the valid ones otherwise."""
    try:
        return Outcome(outcome)
    except ValueError:
        valid = ", ".join(o.value for o in Outcome)
        raise ValueError(f"unknown outcome {outcome!r}; valid outcomes: {valid}") from None


def check_transition(current: AlarmStatus, target: AlarmStatus, outcome: str | None) -> None:
    """Raise ``TransitionError`` unless ``current → target`` (with ``outcome``) is allowed."""
    current = AlarmStatus(current)
    target = AlarmStatus(target)
    allowed = allowed_targets(current)
    if target not in allowed:
        if current in FINAL_STATUSES:
            hint = f"{current.value} is final: no further transition is allowed"
        else:
            hint = f"from {current.value} the allowed transitions are: " + ", ".join(
                status.value for status in allowed
            )
        raise TransitionError(
            current,
            target,
            f"cannot move an alarm from {current.value} to {target.value}; {hint}",
        )
    if target is not AlarmStatus.RESOLVED:
        if outcome is not None:
            raise TransitionError(
                current,
                target,
                f"an outcome is given only when resolving, not from {current.value} "
                f"to {target.value}",
            )
        return
    if outcome is None:
        valid = ", ".join(o.value for o in Outcome)
        raise TransitionError(
            current,
            target,
            f"resolving an alarm (from {current.value} to resolved) needs an outcome: {valid}",
        )
    try:
        parsed = parse_outcome(outcome)
    except ValueError as exc:
        raise TransitionError(
            current, target, f"cannot move an alarm from {current.value} to resolved: {exc}"
        ) from None
    if current in UNTAKEN_STATUSES and parsed not in UNTAKEN_RESOLVE_OUTCOMES:
        valid = ", ".join(o.value for o in Outcome if o in UNTAKEN_RESOLVE_OUTCOMES)
        raise TransitionError(
            current,
            target,
            f"cannot move an alarm from {current.value} to resolved with outcome "
            f"{parsed.value}: nobody has acknowledged it; acknowledge it first, or resolve "
            f"it as one of: {valid}",
        )


def is_active(status: AlarmStatus) -> bool:
    """Whether someone still has to act on an alarm in ``status``."""
    return AlarmStatus(status) in ACTIVE_STATUSES
