"""``/api/v1/devices``: registered devices and their last known state (every staff role)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from care_portal.const import (
    API_PAGE_DEFAULT,
    API_PAGE_MAX,
    API_PREFIX,
    DB_BIGINT_MAX,
    NO_NUL_PATTERN,
)
from care_portal.deps import ClockDep, CurrentUser, SessionDep
from care_portal.schemas.devices import DevicePublic, DevicesPublic
from hub.storage.models import Device

router = APIRouter(prefix=f"{API_PREFIX}/devices", tags=["devices"])


@router.get("", response_model=DevicesPublic)
def list_devices(
    session: SessionDep,
    clock: ClockDep,
    _user: CurrentUser,
    home_id: Annotated[str | None, Query(pattern=NO_NUL_PATTERN)] = None,
    include_retired: bool = False,
    limit: Annotated[int, Query(ge=1, le=API_PAGE_MAX)] = API_PAGE_DEFAULT,
    offset: Annotated[int, Query(ge=0, le=DB_BIGINT_MAX)] = 0,
) -> DevicesPublic:
    """Devices by home and id, optionally of one home; retired ones only when asked for."""
    conditions = []
    if home_id is not None:
        conditions.append(Device.home_id == home_id)
    if not include_retired:
        conditions.append((Device.retired_at.is_(None)) | (Device.retired_at > clock.now()))
    devices = session.scalars(
        select(Device)
        .where(*conditions)
        .order_by(Device.home_id, Device.id)
        .limit(limit)
        .offset(offset)
        .options(selectinload(Device.room))
    ).all()
    count = session.scalar(select(func.count()).select_from(Device).where(*conditions)) or 0
    return DevicesPublic(data=[_public(device) for device in devices], count=count)


def _public(device: Device) -> DevicePublic:
    return DevicePublic(
        id=device.id,
        home_id=device.home_id,
        room=device.room.name if device.room is not None else None,
        type=device.type,
        protocol=device.protocol,
        z2m_friendly_name=device.z2m_friendly_name,
        supervision_interval_s=device.supervision_interval_s,
        online=device.online,
        battery=device.battery,
        rssi=device.rssi,
        tamper=device.tamper,
        last_seen_at=device.last_seen_at,
        test_mode_until=device.test_mode_until,
        retired_at=device.retired_at,
    )
