"""The catalogue of device types: what each can report and how often it must be heard from."""

from __future__ import annotations

from dataclasses import dataclass

from devices.events import EventKind
from hub.storage.models import DeviceType


@dataclass(frozen=True, slots=True)
class DeviceTypeInfo:
    type: DeviceType
    # What the device reports
    events: frozenset[EventKind]
    # A device silent for longer than this is offline (technical alarm, issue 3)
    default_supervision_interval_s: int
    # Can this device alone make a resident safe (fall / button)? Then offline is red.
    life_safety: bool
    # SCAIP (CLC/TS 50134-9) device code, for mapping
    scaip_code: str


CATALOGUE: dict[DeviceType, DeviceTypeInfo] = {
    DeviceType.FALL_SENSOR: DeviceTypeInfo(
        DeviceType.FALL_SENSOR, frozenset({EventKind.FALL, EventKind.MOTION}), 3600, True, "0005"
    ),
    DeviceType.ALARM_BUTTON: DeviceTypeInfo(
        DeviceType.ALARM_BUTTON, frozenset({EventKind.BUTTON}), 3600, True, "0003"
    ),
    DeviceType.DOOR_CONTACT: DeviceTypeInfo(
        DeviceType.DOOR_CONTACT, frozenset({EventKind.DOOR}), 3600, False, "0014"
    ),
    DeviceType.MOTION_SENSOR: DeviceTypeInfo(
        DeviceType.MOTION_SENSOR, frozenset({EventKind.MOTION}), 3600, False, "0015"
    ),
}


def info(device_type: DeviceType | str) -> DeviceTypeInfo:
    return CATALOGUE[DeviceType(device_type)]
