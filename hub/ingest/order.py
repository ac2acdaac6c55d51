"""Which of the received, not yet committed messages the ingest worker commits next.

Falls and alarm-button actions go first (ADR 18): under load a fall must not wait behind the
door and motion events queued before it. It may overtake a message only where the order cannot
matter: another home's messages, and messages that change no home at all (rejected or ignored
ones). A home's own messages keep their order, so the rules see them as they came and a signed
device's ``seq`` still only rises. A Zigbee2MQTT topic names no home (the friendly name belongs to
a device the database knows), so such a message is treated as possibly of any home: nothing
overtakes it, and it overtakes nothing.

Pure: no clock, no database, no MQTT.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from devices.events import Decoded, DecodeResult, EventKind, SensorEventMsg

URGENT_KINDS = frozenset({EventKind.FALL, EventKind.BUTTON})


@dataclass(frozen=True, slots=True)
class Ordering:
    """What the order of commits must respect about one message."""

    urgent: bool  # a fall or a button action: committed before routine messages it may pass
    home: str | None  # the home its topic names; None: it may be of any home
    free: bool  # it changes no home's state (rejected, ignored): any message may pass it


def ordering(result: DecodeResult) -> Ordering:
    """Classify a decoded message for ``next_batch``."""
    if not isinstance(result, Decoded):
        return Ordering(urgent=False, home=None, free=True)
    urgent = any(
        isinstance(item, SensorEventMsg) and item.kind in URGENT_KINDS for item in result.messages
    )
    homes = {
        item.device.home_id if item.device.protocol == "native" else None
        for item in result.messages
    }
    home = homes.pop() if len(homes) == 1 else None
    return Ordering(urgent=urgent, home=home, free=False)


def next_batch(pending: Sequence[Ordering], limit: int) -> list[int]:
    """Positions in ``pending`` (oldest first) to commit next, ascending, at most ``limit``.

    Without an urgent message: the oldest ``limit``. With one: the urgent messages and every
    earlier message that may share a home with one of them (or with another message taken),
    in arrival order; routine messages of other homes wait for the next batch. If that set is
    larger than ``limit`` its oldest ``limit`` are taken: every message they must follow is
    older, so it is taken too.
    """
    last = max((k for k, item in enumerate(pending) if item.urgent), default=None)
    if last is None:
        return list(range(min(limit, len(pending))))
    taken: list[int] = []
    homes: set[str] = set()  # homes of the messages taken so far (all later than the current)
    any_home = False  # a message taken so far may be of any home
    for k in range(last, -1, -1):
        item = pending[k]
        if item.free and not item.urgent:
            continue
        must = (
            item.urgent
            or any_home
            or (item.home is None and bool(taken))
            or (item.home is not None and item.home in homes)
        )
        if not must:
            continue
        taken.append(k)
        if item.home is None:
            any_home = True
        else:
            homes.add(item.home)
    taken.reverse()
    return taken[:limit]
