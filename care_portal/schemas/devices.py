"""Response models of the devices API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from hub.storage.models import DeviceType, Protocol


class DevicePublic(BaseModel):
    """A registered device and what the hub last heard from it."""

    model_config = ConfigDict(extra="forbid", frozen=True, from_attributes=True)

    id: str
    home_id: str
    room: str | None = Field(description="the room's name, if placed in one")
    type: DeviceType
    protocol: Protocol
    z2m_friendly_name: str | None
    supervision_interval_s: int
    online: bool | None
    battery: int | None
    rssi: int | None
    tamper: bool | None
    last_seen_at: datetime | None
    test_mode_until: datetime | None
    retired_at: datetime | None


class DevicesPublic(BaseModel):
    """A page of devices and how many match in all."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data: list[DevicePublic]
    count: int
