"""The coordinator's reports: response times, alarms per type, false alarms, devices; CSV."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Request, status
from fastapi.responses import HTMLResponse, PlainTextResponse
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.responses import Response

from care_portal.const import LOW_BATTERY_PERCENT
from care_portal.deps import ClockDep, SessionDep, TemplatesDep, TimezoneDep, TranslatorDep
from care_portal.i18n import Translator
from care_portal.reports_calc import (
    AlarmFacts,
    DeviceFacts,
    alarms_by_type,
    device_rows,
    device_summary,
    false_alarm_rate,
    false_alarms_by_type,
    format_duration,
    hbar_chart,
    response_times,
    seconds_or_none,
    to_csv,
)
from care_portal.templating import render
from care_portal.web_session import require_roles
from hub.storage.models import (
    Alarm,
    AlarmStatus,
    AlarmTimelineEntry,
    Device,
    Home,
    Resident,
    StaffRole,
    StaffUser,
    Zone,
)

router = APIRouter(tags=["reports"], default_response_class=HTMLResponse)

ReportReaderDep = Annotated[
    StaffUser, Depends(require_roles(StaffRole.COORDINATOR, StaffRole.ADMIN))
]
DEFAULT_PERIOD_DAYS = 28
CSV_KINDS = ("response_times", "alarms_by_type", "false_alarms", "devices")


@dataclass(frozen=True, slots=True)
class Period:
    """Local days ``first`` to ``last`` inclusive, and the zone (``None``: every zone)."""

    first: date
    last: date
    zone_id: int | None

    def bounds(self, tz: ZoneInfo) -> tuple[datetime, datetime]:
        """The instants ``[start, end)`` of the period."""
        start = datetime.combine(self.first, time(0), tzinfo=tz)
        end = datetime.combine(self.last + timedelta(days=1), time(0), tzinfo=tz)
        return start, end


def parse_period(
    session: Session, params: dict[str, str], today: date, t: Translator
) -> tuple[Period, list[str]]:
    """The period and zone of the query (default: the last four weeks, every zone) and errors."""
    errors: list[str] = []
    first = today - timedelta(days=DEFAULT_PERIOD_DAYS - 1)
    last = today
    try:
        if params.get("from"):
            first = date.fromisoformat(params["from"])
        if params.get("to"):
            last = date.fromisoformat(params["to"])
    except ValueError:
        errors.append(t("reports.error_date"))
        first, last = today - timedelta(days=DEFAULT_PERIOD_DAYS - 1), today
    if last < first:
        errors.append(t("reports.error_order"))
        first, last = last, first
    zone_id: int | None = None
    raw_zone = params.get("zone", "")
    if raw_zone not in ("", "all"):
        if raw_zone.isdigit() and session.get(Zone, int(raw_zone)) is not None:
            zone_id = int(raw_zone)
        else:
            errors.append(t("reports.error_zone"))
    return Period(first, last, zone_id), errors


def load_alarm_facts(session: Session, period: Period, tz: ZoneInfo) -> list[AlarmFacts]:
    """Alarms opened in the period (in the zone), with their first acknowledgement and arrival."""
    start, end = period.bounds(tz)
    in_period = [Alarm.opened_at >= start, Alarm.opened_at < end]
    if period.zone_id is not None:
        in_period.append(Resident.zone_id == period.zone_id)
    firsts: dict[tuple[int, str], datetime] = {}
    for alarm_id, to_status, at in session.execute(
        select(
            AlarmTimelineEntry.alarm_id,
            AlarmTimelineEntry.to_status,
            func.min(AlarmTimelineEntry.at),
        )
        .join(Alarm, AlarmTimelineEntry.alarm_id == Alarm.id)
        .join(Resident, Alarm.resident_id == Resident.id)
        .where(
            *in_period,
            AlarmTimelineEntry.kind == "transition",
            AlarmTimelineEntry.to_status.in_(
                [AlarmStatus.ACKNOWLEDGED.value, AlarmStatus.ON_SITE.value]
            ),
        )
        .group_by(AlarmTimelineEntry.alarm_id, AlarmTimelineEntry.to_status)
    ):
        if to_status is not None and at is not None:
            firsts[(alarm_id, to_status)] = at
    rows = session.execute(
        select(
            Alarm.id,
            Zone.name,
            Alarm.type,
            Alarm.status,
            Alarm.outcome,
            Alarm.opened_at,
            Alarm.device_id,
        )
        .join(Resident, Alarm.resident_id == Resident.id)
        .join(Zone, Resident.zone_id == Zone.id)
        .where(*in_period)
        .order_by(Alarm.opened_at, Alarm.id)
    )
    return [
        AlarmFacts(
            id=alarm_id,
            zone=zone,
            type=kind,
            status=AlarmStatus(alarm_status),
            outcome=outcome,
            opened_at=opened_at,
            taken_at=firsts.get((alarm_id, AlarmStatus.ACKNOWLEDGED.value)),
            on_site_at=firsts.get((alarm_id, AlarmStatus.ON_SITE.value)),
            device_id=device_id,
        )
        for alarm_id, zone, kind, alarm_status, outcome, opened_at, device_id in rows
    ]


def load_device_facts(session: Session, zone_id: int | None) -> list[DeviceFacts]:
    """Registered (not retired) devices, in the zone when one is chosen."""
    query = (
        select(Device.id, Device.home_id, Zone.name, Device.type, Device.online, Device.battery)
        .join(Home, Device.home_id == Home.id)
        .join(Zone, Home.zone_id == Zone.id)
        .where(Device.retired_at.is_(None))
        .order_by(Device.id)
    )
    if zone_id is not None:
        query = query.where(Home.zone_id == zone_id)
    return [
        DeviceFacts(
            id=device_id,
            home_id=home_id,
            zone=zone,
            type=device_type.value,
            online=online,
            battery=battery,
        )
        for device_id, home_id, zone, device_type, online, battery in session.execute(query)
    ]


def _csv_rows(
    kind: str, alarms: list[AlarmFacts], devices: list[DeviceFacts], tz: ZoneInfo
) -> tuple[list[str], list[list[object]]]:
    if kind == "response_times":
        return (
            [
                "week",
                "zone",
                "taken_count",
                "open_to_taken_p50_s",
                "open_to_taken_p90_s",
                "on_site_count",
                "taken_to_on_site_p50_s",
                "taken_to_on_site_p90_s",
            ],
            [
                [
                    r.week,
                    r.zone,
                    r.taken_count,
                    seconds_or_none(r.taken_p50_s),
                    seconds_or_none(r.taken_p90_s),
                    r.on_site_count,
                    seconds_or_none(r.on_site_p50_s),
                    seconds_or_none(r.on_site_p90_s),
                ]
                for r in response_times(alarms, tz)
            ],
        )
    if kind == "alarms_by_type":
        return ["type", "count"], [[k, n] for k, n in alarms_by_type(alarms)]
    if kind == "false_alarms":
        rows: list[list[object]] = [
            [k, r.false_alarms, r.resolved, _rate(r.rate)] for k, r in false_alarms_by_type(alarms)
        ]
        total = false_alarm_rate(alarms)
        rows.append(["all", total.false_alarms, total.resolved, _rate(total.rate)])
        return ["type", "false_alarms", "resolved", "false_alarm_rate"], rows
    return (
        ["device", "home", "zone", "type", "online", "battery", "battery_low", "offline_alarms"],
        [
            [
                d.id,
                d.home_id,
                d.zone,
                d.type,
                "" if d.online is None else str(d.online).lower(),
                d.battery,
                str(d.battery_low).lower(),
                d.offline_alarms,
            ]
            for d in device_rows(devices, alarms, low_battery_pct=LOW_BATTERY_PERCENT)
        ],
    )


def _rate(rate: float | None) -> str:
    return "" if rate is None else f"{rate:.4f}"


@router.get("/reports", name="reports")
def reports_page(
    request: Request,
    user: ReportReaderDep,
    session: SessionDep,
    clock: ClockDep,
    tz: TimezoneDep,
    t: TranslatorDep,
    templates: TemplatesDep,
) -> HTMLResponse:
    """Response times, alarms per type, false-alarm rate and devices for a period and zone."""
    now = clock.now()
    period, errors = parse_period(session, dict(request.query_params), now.astimezone(tz).date(), t)
    alarms = load_alarm_facts(session, period, tz)
    devices = device_rows(
        load_device_facts(session, period.zone_id), alarms, low_battery_pct=LOW_BATTERY_PERCENT
    )
    responses = response_times(alarms, tz)
    by_type = alarms_by_type(alarms)
    several_zones = len({r.zone for r in responses}) > 1

    def row_label(week: str, zone: str) -> str:
        return f"{week} {zone}" if several_zones else week

    zones = session.scalars(select(Zone).order_by(Zone.name)).all()
    offline = [(d.id, float(d.offline_alarms)) for d in devices if d.offline_alarms]
    return render(
        templates,
        request,
        "reports.html",
        t,
        {
            "active_nav": "reports",
            "period": period,
            "errors": errors,
            "zones": [(z.id, z.name) for z in zones],
            "responses": responses,
            "taken_chart": hbar_chart(
                [(row_label(r.week, r.zone), r.taken_p90_s or 0.0) for r in responses]
            ),
            "on_site_chart": hbar_chart(
                [(row_label(r.week, r.zone), r.on_site_p90_s or 0.0) for r in responses]
            ),
            "by_type": by_type,
            "type_chart": hbar_chart([(t.get("alarm_type." + k, k), float(n)) for k, n in by_type]),
            "false_total": false_alarm_rate(alarms),
            "false_by_type": false_alarms_by_type(alarms),
            "devices": devices,
            "device_summary": device_summary(devices),
            "offline_chart": hbar_chart(offline),
            "low_battery_pct": LOW_BATTERY_PERCENT,
            "duration": format_duration,
            "csv_kinds": CSV_KINDS,
            "query": {
                "from": period.first.isoformat(),
                "to": period.last.isoformat(),
                "zone": "" if period.zone_id is None else str(period.zone_id),
            },
        },
        status_code=status.HTTP_400_BAD_REQUEST if errors else status.HTTP_200_OK,
    )


@router.get("/reports.csv", name="reports_csv", response_class=PlainTextResponse)
def reports_csv(
    request: Request,
    user: ReportReaderDep,
    session: SessionDep,
    clock: ClockDep,
    tz: TimezoneDep,
    t: TranslatorDep,
    kind: str = "response_times",
) -> Response:
    """One report as ``text/csv`` with a header row (machine names, seconds, rates 0–1)."""
    if kind not in CSV_KINDS:
        return PlainTextResponse(
            f"unknown kind {kind!r}; choose one of: {', '.join(CSV_KINDS)}",
            status_code=status.HTTP_400_BAD_REQUEST,
        )
    now = clock.now()
    period, errors = parse_period(session, dict(request.query_params), now.astimezone(tz).date(), t)
    if errors:
        return PlainTextResponse("; ".join(errors), status_code=status.HTTP_400_BAD_REQUEST)
    alarms = load_alarm_facts(session, period, tz)
    devices = load_device_facts(session, period.zone_id) if kind == "devices" else []
    header, rows = _csv_rows(kind, alarms, devices, tz)
    filename = f"carehub-{kind}-{period.first.isoformat()}-{period.last.isoformat()}.csv"
    return Response(
        to_csv(header, rows),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
        },
    )
