"""Walk-test checklists per device type, and which items a device's events have ticked off."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hub.storage.models import DeviceType


@dataclass(frozen=True, slots=True)
class ChecklistItem:
    """One thing an installer must make a device show; ``after`` must be ticked first."""

    key: str
    label: str
    kind: str  # the event kind that can tick it
    field: str | None = None  # a data field that must have ``value``
    value: object = None
    after: str | None = None


@dataclass(frozen=True, slots=True)
class ObservedEvent:
    """A stored sensor event as the walk test sees it."""

    kind: str
    data: Mapping[str, Any]
    at: datetime


@dataclass(frozen=True, slots=True)
class ItemProgress:
    """A checklist item and when it was ticked (None: not yet)."""

    key: str
    label: str
    done_at: datetime | None

    @property
    def done(self) -> bool:
        return self.done_at is not None


CHECKLISTS: dict[DeviceType, tuple[ChecklistItem, ...]] = {
    DeviceType.ALARM_BUTTON: (
        ChecklistItem("press", "Press the alarm button", "button", "action", "press"),
    ),
    DeviceType.DOOR_CONTACT: (
        ChecklistItem("open", "Open the door", "door", "open", True),
        ChecklistItem("close", "Close the door again", "door", "open", False, after="open"),
    ),
    DeviceType.MOTION_SENSOR: (
        ChecklistItem("motion", "Walk past the motion sensor", "motion", "motion", True),
    ),
    DeviceType.FALL_SENSOR: (ChecklistItem("fall", "Simulate a fall", "fall"),),
}


def checklist(device_type: DeviceType | str) -> tuple[ChecklistItem, ...]:
    """What a device of this type must show in a walk test."""
    return CHECKLISTS[DeviceType(device_type)]


def _matches(item: ChecklistItem, event: ObservedEvent) -> bool:
    if event.kind != item.kind:
        return False
    return item.field is None or event.data.get(item.field) == item.value


def walk_test_progress(
    device_type: DeviceType | str, events: Iterable[ObservedEvent]
) -> tuple[ItemProgress, ...]:
    """Tick the device type's checklist from its events (in the order they happened).

    An item is ticked by the first matching event after the item it depends on was ticked
    (a door must open before its closing counts). Pure: no clock, no database.
    """
    items = checklist(device_type)
    done: dict[str, datetime] = {}
    for event in events:
        for item in items:
            if item.key in done or (item.after is not None and item.after not in done):
                continue
            if _matches(item, event):
                done[item.key] = event.at
                break
    return tuple(ItemProgress(i.key, i.label, done.get(i.key)) for i in items)
