"""Residents' pages: the list, a profile (home, devices, rules, relatives, activity), absence."""

from __future__ import annotations

import types
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any, Union, get_args, get_origin
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Form, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import ValidationError
from sqlalchemy import select, update
from sqlalchemy.orm import Session, selectinload
from starlette.responses import Response

from care_portal.const import LOW_BATTERY_PERCENT
from care_portal.deps import ClockDep, SessionDep, TemplatesDep, TimezoneDep, TranslatorDep
from care_portal.i18n import Translator
from care_portal.reports_calc import BarChart, bar_chart, motion_by_hour
from care_portal.templating import render
from care_portal.web_session import CsrfDep, audit, audit_many, require_roles
from hub.rules.config import RuleConfig
from hub.storage.models import (
    Alarm,
    Device,
    EscalationPolicy,
    Home,
    Resident,
    RuleState,
    SensorEvent,
    Severity,
    StaffRole,
    StaffUser,
    Zone,
)

router = APIRouter(tags=["residents"], default_response_class=HTMLResponse)

# Installers have no business with health data: every page here is for care staff only.
CareStaffDep = Annotated[
    StaffUser,
    Depends(require_roles(StaffRole.NURSE, StaffRole.COORDINATOR, StaffRole.ADMIN)),
]
# Who may change which escalation policy a resident has.
PLANNER_ROLES = frozenset({StaffRole.COORDINATOR, StaffRole.ADMIN})
# Who may change a resident's rule settings: the same planners. Turning fall detection off or
# stretching a grace time changes who gets help and when, so it is a planning decision taken
# in the office; nurses see every setting in force on the profile.
RULE_EDITOR_ROLES = PLANNER_ROLES

ACTIVITY_DAYS = 7
RECENT_ALARMS_LIMIT = 10
PHONE_VISIBLE_DIGITS = 2


@dataclass(frozen=True, slots=True)
class ResidentRow:
    id: int
    full_name: str
    label: str
    zone: str
    home_id: str
    address: str | None
    absent_until: date | None  # the last local day of an active absence


@dataclass(frozen=True, slots=True)
class DeviceHealth:
    id: str
    type: str
    room: str | None
    online: bool | None
    battery: int | None
    battery_low: bool
    last_seen: datetime | None
    test_mode_until: datetime | None


@dataclass(frozen=True, slots=True)
class RuleSetting:
    key: str
    value: str
    overridden: bool


@dataclass(frozen=True, slots=True)
class RelativeRow:
    name: str
    role: str
    priority: int
    quiet_hours: str | None
    phone_masked: str
    sms_opt_out: bool


@dataclass(frozen=True, slots=True)
class AlarmRow:
    id: int
    type: str
    severity: str
    status: str
    outcome: str | None
    opened_at: datetime


def mask_phone(phone: str) -> str:
    """A phone number with every digit but the last two hidden: ``+47 912 34 567`` → ``•…•67``."""
    digits = [c for c in phone if c.isdigit()]
    if len(digits) <= PHONE_VISIBLE_DIGITS:
        return "•" * len(digits)
    return "•" * (len(digits) - PHONE_VISIBLE_DIGITS) + "".join(digits[-PHONE_VISIBLE_DIGITS:])


def absent_until(resident: Resident, now: datetime, tz: ZoneInfo) -> date | None:
    """The last local day of the resident's absence, if the absence is still running."""
    if resident.absence_until is None or resident.absence_until <= now:
        return None
    return (resident.absence_until - timedelta(microseconds=1)).astimezone(tz).date()


def _format_setting(value: object) -> str:
    if isinstance(value, bool):
        return "✓" if value else "✗"
    if isinstance(value, time):
        return value.strftime("%H:%M")
    if value is None:
        return "–"
    return str(getattr(value, "value", value))


def rule_settings(overrides: dict[str, Any] | None) -> tuple[list[RuleSetting], str | None]:
    """The effective rule settings with overrides marked, and an error if they are invalid."""
    error: str | None = None
    try:
        config = RuleConfig.model_validate(overrides or {})
    except ValidationError as exc:
        config = RuleConfig()
        error = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
    keys = set(overrides or {}) if error is None else set()
    settings = [
        RuleSetting(key=name, value=_format_setting(getattr(config, name)), overridden=name in keys)
        for name in RuleConfig.model_fields
    ]
    return settings, error


@dataclass(frozen=True, slots=True)
class RuleField:
    """One input of the rule settings form."""

    key: str
    kind: str  # bool, int, float, time, severity
    value: str  # the form's text (a checkbox: "on" or "")
    optional: bool  # may be left empty (no limit)
    error: str | None


def rule_field_kind(name: str) -> tuple[str, bool]:
    """(kind, optional) of a ``RuleConfig`` field, from its type annotation."""
    annotation = RuleConfig.model_fields[name].annotation
    optional = False
    if get_origin(annotation) in (Union, types.UnionType):
        members = [a for a in get_args(annotation) if a is not type(None)]
        optional = len(members) < len(get_args(annotation))
        annotation = members[0]
    kinds: dict[object, str] = {
        bool: "bool",
        int: "int",
        float: "float",
        time: "time",
        Severity: "severity",
    }
    return kinds[annotation], optional


def rule_form_value(value: object) -> str:
    """A setting as the form shows it."""
    if isinstance(value, bool):
        return "on" if value else ""
    if isinstance(value, time):
        return value.strftime("%H:%M")
    if value is None:
        return ""
    return str(getattr(value, "value", value))


def rule_form_fields(values: Mapping[str, str], errors: Mapping[str, str]) -> list[RuleField]:
    """Every setting as a form input, in the model's order, with its error if any."""
    fields = []
    for name in RuleConfig.model_fields:
        kind, optional = rule_field_kind(name)
        fields.append(RuleField(name, kind, values.get(name, ""), optional, errors.get(name)))
    return fields


def _limit(value: object) -> str:
    """A model limit as people write it: 1, not 1.0."""
    return f"{value:g}" if isinstance(value, int | float) else str(value)


def parse_rule_form(
    form: Mapping[str, str], t: Translator
) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """The resident's overrides from the posted form, or the errors per field.

    Overrides are the settings that differ from the defaults, in JSON form (times ``HH:MM:SS``,
    severities by name): a default changed later still reaches every resident who kept it.
    A checkbox that is not sent is off (browsers send nothing for an unchecked box).
    """
    parsed: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name in RuleConfig.model_fields:
        kind, optional = rule_field_kind(name)
        raw = form.get(name, "").strip()
        if kind == "bool":
            parsed[name] = raw not in ("", "0", "off", "false")
            continue
        if raw == "" and optional:
            parsed[name] = None
            continue
        try:
            if kind == "int":
                parsed[name] = int(raw)
            elif kind == "float":
                parsed[name] = float(raw.replace(",", "."))
            elif kind == "time":
                parsed[name] = time.fromisoformat(raw).replace(second=0, microsecond=0)
            else:
                parsed[name] = Severity(raw)
        except ValueError:
            errors[name] = t(f"residents.rule_error_{kind}")
    if errors:
        return None, errors
    try:
        config = RuleConfig.model_validate(parsed)
    except ValidationError as exc:
        for error in exc.errors():
            name = str(error["loc"][0]) if error["loc"] else ""
            limits = error.get("ctx") or {}
            if error["type"] == "greater_than_equal":
                errors[name] = t("residents.rule_error_min", limit=_limit(limits.get("ge")))
            elif error["type"] == "less_than_equal":
                errors[name] = t("residents.rule_error_max", limit=_limit(limits.get("le")))
            else:
                errors[name] = str(error["msg"])
        return None, errors
    chosen = config.model_dump(mode="json")
    defaults = RuleConfig().model_dump(mode="json")
    return {k: v for k, v in chosen.items() if v != defaults[k]}, {}


def load_resident(session: Session, resident_id: int) -> Resident:
    """The resident with home, rooms, devices and relatives, or 404."""
    resident = session.scalar(
        select(Resident)
        .where(Resident.id == resident_id)
        .options(
            selectinload(Resident.home).selectinload(Home.rooms),
            selectinload(Resident.home).selectinload(Home.devices).selectinload(Device.room),
            selectinload(Resident.relatives),
        )
    )
    if resident is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such resident")
    return resident


def activity_chart(
    session: Session, home_id: str, now: datetime, tz: ZoneInfo
) -> tuple[list[int], BarChart]:
    """Motion events per local hour of day over the last week, and their bar chart."""
    since = now - timedelta(days=ACTIVITY_DAYS)
    events = session.execute(
        select(SensorEvent.received_at, SensorEvent.event_ts, SensorEvent.data).where(
            SensorEvent.home_id == home_id,
            SensorEvent.kind == "motion",
            SensorEvent.received_at >= since,
            SensorEvent.received_at <= now,
        )
    ).all()
    times = [
        event_ts or received_at
        for received_at, event_ts, data in events
        if not isinstance(data, dict) or data.get("motion", True) is not False
    ]
    counts = motion_by_hour(times, tz)
    chart = bar_chart([(f"{hour:02d}", float(n)) for hour, n in enumerate(counts)], height=120)
    return counts, chart


def profile_context(
    session: Session,
    resident: Resident,
    *,
    user: StaffUser,
    now: datetime,
    tz: ZoneInfo,
) -> dict[str, object]:
    """Everything the profile page shows of ``resident`` (the caller writes the audit entry)."""
    home = resident.home
    zone = session.get(Zone, resident.zone_id)
    devices = [
        DeviceHealth(
            id=d.id,
            type=d.type.value,
            room=d.room.name if d.room is not None else None,
            online=d.online,
            battery=d.battery,
            battery_low=d.battery is not None and d.battery < LOW_BATTERY_PERCENT,
            last_seen=d.last_seen_at.astimezone(tz) if d.last_seen_at else None,
            test_mode_until=(
                d.test_mode_until.astimezone(tz)
                if d.test_mode_until is not None and d.test_mode_until > now
                else None
            ),
        )
        for d in home.devices
        if d.retired_at is None
    ]
    settings, settings_error = rule_settings(resident.rule_config)
    try:
        in_force = RuleConfig.model_validate(resident.rule_config or {})
    except ValidationError:
        in_force = RuleConfig()
    rule_values = {
        name: rule_form_value(getattr(in_force, name)) for name in RuleConfig.model_fields
    }
    relatives = [
        RelativeRow(
            name=r.name,
            role=r.role.value,
            priority=r.priority,
            quiet_hours=(
                f"{r.quiet_start:%H:%M}–{r.quiet_end:%H:%M}"
                if r.quiet_start is not None and r.quiet_end is not None
                else None
            ),
            phone_masked=mask_phone(r.phone),
            sms_opt_out=r.sms_opt_out,
        )
        for r in resident.relatives
    ]
    alarms = [
        AlarmRow(
            id=a.id,
            type=a.type,
            severity=a.severity.value,
            status=a.status.value,
            outcome=a.outcome,
            opened_at=a.opened_at.astimezone(tz),
        )
        for a in session.scalars(
            select(Alarm)
            .where(Alarm.resident_id == resident.id)
            .order_by(Alarm.opened_at.desc(), Alarm.id.desc())
            .limit(RECENT_ALARMS_LIMIT)
        )
    ]
    counts, chart = activity_chart(session, home.id, now, tz)
    policies = session.scalars(select(EscalationPolicy).order_by(EscalationPolicy.name)).all()
    return {
        "active_nav": "residents",
        "resident": resident,
        "zone": zone.name if zone is not None else "",
        "home": home,
        "rooms": home.rooms,
        "devices": devices,
        "settings": settings,
        "settings_error": settings_error,
        "relatives": relatives,
        "alarms": alarms,
        "motion_counts": counts,
        "motion_total": sum(counts),
        "chart": chart,
        "activity_days": ACTIVITY_DAYS,
        "absent_until": absent_until(resident, now, tz),
        "today": now.astimezone(tz).date().isoformat(),
        "policies": [(p.id, p.name) for p in policies],
        "can_set_policy": user.role in PLANNER_ROLES,
        "absence_error": None,
        "absence_value": "",
        "policy_error": None,
        "can_edit_rules": user.role in RULE_EDITOR_ROLES,
        "rule_fields": rule_form_fields(rule_values, {}),
        "rules_error": False,
        "severities": [s.value for s in Severity],
    }


@router.get("/residents", name="residents")
def residents_page(
    request: Request,
    user: CareStaffDep,
    session: SessionDep,
    clock: ClockDep,
    tz: TimezoneDep,
    t: TranslatorDep,
    templates: TemplatesDep,
) -> HTMLResponse:
    """Every resident with zone, home and absence; one audit entry per resident shown."""
    now = clock.now()
    rows = session.execute(
        select(Resident, Zone.name, Home.address)
        .join(Zone, Resident.zone_id == Zone.id)
        .join(Home, Resident.home_id == Home.id)
        .order_by(Zone.name, Resident.full_name, Resident.id)
    ).all()
    residents = [
        ResidentRow(
            id=r.id,
            full_name=r.full_name,
            label=r.label,
            zone=zone,
            home_id=r.home_id,
            address=address,
            absent_until=absent_until(r, now, tz),
        )
        for r, zone, address in rows
    ]
    audit_many(
        session,
        request=request,
        user=user,
        action="resident.list.read",
        now=now,
        resident_ids=[r.id for r in residents],
    )
    session.commit()
    return render(
        templates,
        request,
        "residents.html",
        t,
        {"active_nav": "residents", "residents": residents},
    )


@router.get("/residents/{resident_id}", name="resident")
def resident_page(
    request: Request,
    resident_id: int,
    user: CareStaffDep,
    session: SessionDep,
    clock: ClockDep,
    tz: TimezoneDep,
    t: TranslatorDep,
    templates: TemplatesDep,
) -> HTMLResponse:
    """A resident's profile; the look is recorded in the audit log."""
    now = clock.now()
    resident = load_resident(session, resident_id)
    context = profile_context(session, resident, user=user, now=now, tz=tz)
    audit(
        session,
        request=request,
        user=user,
        action="resident.read",
        now=now,
        resident_id=resident.id,
    )
    session.commit()
    context["saved"] = request.query_params.get("saved")
    return render(templates, request, "resident.html", t, context)


def render_profile_error(
    request: Request,
    session: Session,
    resident: Resident,
    *,
    user: StaffUser,
    now: datetime,
    tz: ZoneInfo,
    t: Translator,
    templates: TemplatesDep,
    errors: dict[str, object],
) -> HTMLResponse:
    """The profile again with a form's error (400); the look is audited like any other."""
    context = profile_context(session, resident, user=user, now=now, tz=tz)
    context.update(errors)
    context["saved"] = None
    audit(
        session,
        request=request,
        user=user,
        action="resident.read",
        now=now,
        resident_id=resident.id,
    )
    session.commit()
    return render(
        templates, request, "resident.html", t, context, status_code=status.HTTP_400_BAD_REQUEST
    )


@router.post("/residents/{resident_id}/absence", name="resident_absence")
def set_absence(
    request: Request,
    resident_id: int,
    user: CareStaffDep,
    _csrf: CsrfDep,
    session: SessionDep,
    clock: ClockDep,
    tz: TimezoneDep,
    t: TranslatorDep,
    templates: TemplatesDep,
    until: Annotated[str, Form()] = "",
    action: Annotated[str, Form()] = "set",
) -> Response:
    """Start absence mode until the end of a local day, or end it (``action=clear``)."""
    now = clock.now()
    resident = load_resident(session, resident_id)
    previous = resident.absence_until
    if action == "clear":
        resident.absence_until = None
    else:
        error: str | None = None
        day: date | None = None
        try:
            day = date.fromisoformat(until.strip())
        except ValueError:
            error = "residents.absence_error_date"
        if day is not None and day < now.astimezone(tz).date():
            error = "residents.absence_error_past"
        if error is not None or day is None:
            return render_profile_error(
                request,
                session,
                resident,
                user=user,
                now=now,
                tz=tz,
                t=t,
                templates=templates,
                errors={
                    "absence_error": t(error or "residents.absence_error_date"),
                    "absence_value": until,
                },
            )
        # Absent up to and including ``day``: rules resume at the next local midnight.
        next_midnight = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz)
        resident.absence_until = next_midnight
    audit(
        session,
        request=request,
        user=user,
        action="resident.absence",
        now=now,
        resident_id=resident.id,
        detail={
            "from": previous.isoformat() if previous else None,
            "to": resident.absence_until.isoformat() if resident.absence_until else None,
        },
    )
    session.commit()
    return RedirectResponse(
        request.url_for("resident", resident_id=resident.id).path + "?saved=absence",
        status_code=status.HTTP_303_SEE_OTHER,
    )


async def posted_form(request: Request) -> dict[str, str]:
    """The posted form's text fields (the rule form has one per setting)."""
    form = await request.form()
    return {key: value for key, value in form.items() if isinstance(value, str)}


RuleEditorDep = Annotated[StaffUser, Depends(require_roles(*RULE_EDITOR_ROLES))]


@router.post("/residents/{resident_id}/rules", name="resident_rules")
def set_rule_settings(
    request: Request,
    resident_id: int,
    user: RuleEditorDep,
    _csrf: CsrfDep,
    session: SessionDep,
    clock: ClockDep,
    tz: TimezoneDep,
    t: TranslatorDep,
    templates: TemplatesDep,
    form: Annotated[dict[str, str], Depends(posted_form)],
) -> Response:
    """Save the resident's rule settings (``action=reset``: back to the defaults).

    The rules read a resident's settings afresh for every event batch and every due run, so
    the next event uses them. Timers already running were set under the old settings (an
    inactivity stopwatch of 12 h, say): the resident's next due time is set to now, so the
    hub's next due run (at the latest its 60 s safety tick) recomputes them.
    """
    now = clock.now()
    resident = load_resident(session, resident_id)
    previous = resident.rule_config
    if form.get("action") == "reset":
        overrides: dict[str, Any] | None = {}
    else:
        overrides, errors = parse_rule_form(form, t)
        if overrides is None:
            values = {name: form.get(name, "") for name in RuleConfig.model_fields}
            return render_profile_error(
                request,
                session,
                resident,
                user=user,
                now=now,
                tz=tz,
                t=t,
                templates=templates,
                errors={"rule_fields": rule_form_fields(values, errors), "rules_error": True},
            )
    resident.rule_config = overrides or None
    session.execute(
        update(RuleState).where(RuleState.resident_id == resident.id).values(next_due_at=now)
    )
    audit(
        session,
        request=request,
        user=user,
        action="resident.rules",
        now=now,
        resident_id=resident.id,
        detail={"from": previous or {}, "to": overrides or {}},
    )
    session.commit()
    return RedirectResponse(
        request.url_for("resident", resident_id=resident.id).path + "?saved=rules#rules",
        status_code=status.HTTP_303_SEE_OTHER,
    )
