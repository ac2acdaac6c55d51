"""Builds the overview page's view model from the database: open alarms first, then homes."""

from __future__ import annotations

import json
from datetime import datetime, tzinfo
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session, selectinload

from care_portal.const import (
    EVENT_DATA_MAX_CHARS,
    LOW_BATTERY_PERCENT,
    OVERVIEW_ALARMS_LIMIT,
    OVERVIEW_EVENTS_LIMIT,
    OVERVIEW_HOMES_LIMIT,
    OVERVIEW_REJECTED_LIMIT,
)
from care_portal.schemas.overview import (
    DeviceState,
    DeviceView,
    EventView,
    HomeView,
    OpenAlarmView,
    Overview,
    RejectedMessageView,
)
from hub.alarms.lifecycle import ACTIVE_STATUSES
from hub.storage.models import (
    Alarm,
    Base,
    Device,
    DiscoveredDevice,
    Home,
    RejectedMessage,
    Resident,
    SensorEvent,
    Severity,
    Zone,
)

# Most urgent first: red, then yellow, then green (the VKP code list).
_SEVERITY_RANK = case(
    {Severity.RED.value: 0, Severity.YELLOW.value: 1, Severity.GREEN.value: 2},
    value=Alarm.severity,
    else_=3,
)


def load_overview(session: Session, *, now: datetime, tz: tzinfo) -> Overview:
    """The overview as of ``now``; every time is given in ``tz``."""
    homes_total = _count(session, Home)
    home_rows = session.execute(
        select(Home, Zone.name)
        .join(Zone, Home.zone_id == Zone.id)
        .order_by(Zone.name, Home.id)
        .limit(OVERVIEW_HOMES_LIMIT)
        .options(
            selectinload(Home.residents),
            selectinload(Home.devices).selectinload(Device.room),
        )
    ).all()
    events = session.scalars(
        select(SensorEvent)
        .order_by(SensorEvent.received_at.desc(), SensorEvent.id.desc())
        .limit(OVERVIEW_EVENTS_LIMIT)
    ).all()
    rejected = session.scalars(
        select(RejectedMessage)
        .order_by(RejectedMessage.received_at.desc(), RejectedMessage.id.desc())
        .limit(OVERVIEW_REJECTED_LIMIT)
    ).all()
    alarm_rows = session.execute(
        select(Alarm, Resident.label)
        .join(Resident, Alarm.resident_id == Resident.id)
        .where(Alarm.status.in_(ACTIVE_STATUSES))
        .order_by(_SEVERITY_RANK, Alarm.opened_at, Alarm.id)
        .limit(OVERVIEW_ALARMS_LIMIT)
    ).all()
    alarms_total = (
        session.scalar(
            select(func.count()).select_from(Alarm).where(Alarm.status.in_(ACTIVE_STATUSES))
        )
        or 0
    )
    return Overview(
        as_of=now.astimezone(tz),
        alarms=[_alarm_view(alarm, label, now=now, tz=tz) for alarm, label in alarm_rows],
        alarms_total=alarms_total,
        homes=[_home_view(home, zone, now=now, tz=tz) for home, zone in home_rows],
        homes_total=homes_total,
        events=[_event_view(event, tz) for event in events],
        discovered_devices=_count(session, DiscoveredDevice),
        rejected_messages=_count(session, RejectedMessage),
        latest_rejected=[
            RejectedMessageView(
                received_at=message.received_at.astimezone(tz),
                topic=message.topic,
                reason=message.reason,
            )
            for message in rejected
        ],
    )


def device_state(online: bool | None) -> DeviceState:
    """The connection state the hub last recorded for a device."""
    if online is None:
        return DeviceState.UNKNOWN
    return DeviceState.ONLINE if online else DeviceState.OFFLINE


def shorten_data(data: Any, limit: int = EVENT_DATA_MAX_CHARS) -> str:
    """An event's data as compact JSON, cut to ``limit`` characters with "…"."""
    text = json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(", ", ": "))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _count(session: Session, model: type[Base]) -> int:
    return session.scalar(select(func.count()).select_from(model)) or 0


def _alarm_view(alarm: Alarm, resident: str, *, now: datetime, tz: tzinfo) -> OpenAlarmView:
    return OpenAlarmView(
        id=alarm.id,
        resident=resident,
        home_id=alarm.home_id,
        type=alarm.type,
        severity=alarm.severity,
        status=alarm.status,
        summary=alarm.summary,
        event_count=alarm.event_count,
        opened_at=alarm.opened_at.astimezone(tz),
        age_minutes=max(0, int((now - alarm.opened_at).total_seconds() // 60)),
        unanswered=alarm.unanswered,
    )


def _home_view(home: Home, zone: str, *, now: datetime, tz: tzinfo) -> HomeView:
    return HomeView(
        id=home.id,
        zone=zone,
        residents=sorted(resident.label for resident in home.residents),
        devices=[
            _device_view(device, now=now, tz=tz)
            for device in home.devices
            if device.retired_at is None or device.retired_at > now
        ],
    )


def _device_view(device: Device, *, now: datetime, tz: tzinfo) -> DeviceView:
    in_test_mode = device.test_mode_until is not None and device.test_mode_until > now
    return DeviceView(
        id=device.id,
        type=device.type,
        protocol=device.protocol,
        room=device.room.name if device.room is not None else None,
        state=device_state(device.online),
        battery=device.battery,
        battery_low=device.battery is not None and device.battery < LOW_BATTERY_PERCENT,
        last_seen=device.last_seen_at.astimezone(tz) if device.last_seen_at else None,
        test_mode_until=(
            device.test_mode_until.astimezone(tz)
            if in_test_mode and device.test_mode_until
            else None
        ),
    )


def _event_view(event: SensorEvent, tz: tzinfo) -> EventView:
    return EventView(
        received_at=event.received_at.astimezone(tz),
        home_id=event.home_id,
        device_id=event.device_id,
        kind=event.kind,
        data=shorten_data(event.data),
    )
