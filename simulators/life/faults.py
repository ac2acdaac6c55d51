"""Device and infrastructure faults, applied to the messages a home would otherwise send.

Faults never change what the resident does, only what reaches the broker: a drained battery
shows in the payloads, a radio drop-out loses messages, a dead device goes quiet, a retry is a
duplicate, a delayed message arrives after a later one, the broker restarts.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from simulators.life.model import (
    DEVICE_KEYS,
    BrokerRestart,
    Control,
    Delivery,
    Duration,
    Publish,
)


class _Fault(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,40}$", description="Named by expectations.")
    at: AwareDatetime


class _DeviceFault(_Fault):
    resident: str
    device: str

    @model_validator(mode="after")
    def _known_device(self) -> _DeviceFault:
        if self.device not in DEVICE_KEYS:
            raise ValueError(f"device {self.device!r} is not one of {sorted(DEVICE_KEYS)}")
        return self


class BatteryDrain(_DeviceFault):
    """The battery reads ``from_pct`` until ``at``, then falls to ``to_pct`` within ``over``."""

    type: Literal["battery_drain"] = "battery_drain"
    from_pct: int = Field(default=30, ge=0, le=100)
    to_pct: int = Field(default=10, ge=0, le=100)
    over: Duration = timedelta(hours=6)


class RadioDropout(_DeviceFault):
    """Nothing the device sends reaches the broker for ``duration``; then it reconnects."""

    type: Literal["radio_dropout"] = "radio_dropout"
    duration: Duration = timedelta(minutes=30)


class DeviceDies(_DeviceFault):
    """From ``at`` the device sends nothing ever again; ``will``: the broker publishes its will."""

    type: Literal["device_dies"] = "device_dies"
    will: bool = False


class Duplicates(_Fault):
    """Every message of the resident's home in the window is sent twice (a QoS 1 retry)."""

    type: Literal["duplicates"] = "duplicates"
    resident: str
    duration: Duration = timedelta(hours=1)
    retry_after: Duration = timedelta(seconds=2)


class OutOfOrder(_Fault):
    """In the window, of two events of the home at most ``max_gap`` apart, the first arrives
    (1 s) after the second: a retry that overtook, a repeater that buffered."""

    type: Literal["out_of_order"] = "out_of_order"
    resident: str
    duration: Duration = timedelta(hours=1)
    max_gap: Duration = timedelta(minutes=2)


class BrokerRestartFault(_Fault):
    """The MQTT broker is restarted (graceful stop and start, same port and data)."""

    type: Literal["broker_restart"] = "broker_restart"


Fault = Annotated[
    BatteryDrain | RadioDropout | DeviceDies | Duplicates | OutOfOrder | BrokerRestartFault,
    Field(discriminator="type"),
]
FAULT_TYPES: tuple[str, ...] = (
    "battery_drain",
    "radio_dropout",
    "device_dies",
    "duplicates",
    "out_of_order",
    "broker_restart",
)


def battery_level(faults: list[Fault], resident: str, device: str, at: datetime) -> int:
    """The battery the device reports at ``at``: 100 unless a drain says otherwise."""
    for fault in faults:
        if isinstance(fault, BatteryDrain) and (fault.resident, fault.device) == (resident, device):
            if at <= fault.at:
                return fault.from_pct
            done = min(1.0, (at - fault.at) / fault.over) if fault.over else 1.0
            return round(fault.from_pct + (fault.to_pct - fault.from_pct) * done)
    return 100


def silenced(faults: list[Fault], resident: str, device: str, at: datetime) -> bool:
    """Whether a message the device sends at ``at`` is lost (drop-out) or never sent (dead)."""
    for fault in faults:
        if not isinstance(fault, RadioDropout | DeviceDies):
            continue
        if (fault.resident, fault.device) != (resident, device):
            continue
        if isinstance(fault, DeviceDies) and at >= fault.at:
            return True
        if isinstance(fault, RadioDropout) and fault.at <= at < fault.at + fault.duration:
            return True
    return False


def apply_delivery_faults(deliveries: list[Delivery], faults: list[Fault]) -> list[Delivery]:
    """Duplicates and reordering (they act on messages already built, seq included)."""
    out = list(deliveries)
    for fault in faults:
        if isinstance(fault, Duplicates):
            out = _duplicate(out, fault)
        elif isinstance(fault, OutOfOrder):
            out = _reorder(out, fault)
    return sorted(out, key=_order)


def _in_window(d: Delivery, resident: str, start: datetime, duration: timedelta) -> bool:
    return isinstance(d, Publish) and d.resident == resident and start <= d.at < start + duration


def _duplicate(deliveries: list[Delivery], fault: Duplicates) -> list[Delivery]:
    out: list[Delivery] = []
    for d in deliveries:
        out.append(d)
        if isinstance(d, Publish) and _in_window(d, fault.resident, fault.at, fault.duration):
            out.append(
                Publish(
                    d.at + fault.retry_after, d.resident, d.device, d.message, f"retry of: {d.note}"
                )
            )
    return out


def _reorder(deliveries: list[Delivery], fault: OutOfOrder) -> list[Delivery]:
    """Hold back every other event in the window until just after the next one."""
    out: list[Delivery] = list(deliveries)
    picked = [
        i
        for i, d in enumerate(out)
        if isinstance(d, Publish)
        and _in_window(d, fault.resident, fault.at, fault.duration)
        and not d.message.retain  # statuses are retained state, not events
    ]
    n = 0
    while n + 1 < len(picked):
        a, b = out[picked[n]], out[picked[n + 1]]
        assert isinstance(a, Publish) and isinstance(b, Publish)
        if b.at - a.at > fault.max_gap:
            n += 1
            continue
        out[picked[n]] = Publish(
            b.at + timedelta(seconds=1), a.resident, a.device, a.message, f"delayed: {a.note}"
        )
        n += 2
    return out


def _order(d: Delivery) -> datetime:
    return d.at


def control_faults(faults: list[Fault]) -> list[Control]:
    """The faults the runner acts out itself (the broker restart)."""
    return [Control(f.at, BrokerRestart(f.at)) for f in faults if isinstance(f, BrokerRestartFault)]
