"""Roster and escalation policy pages: shift patterns, overrides, on duty now, policy editing."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, time
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Form, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.responses import Response

from care_portal.deps import ClockDep, SessionDep, TemplatesDep, TimezoneDep, TranslatorDep
from care_portal.i18n import Translator
from care_portal.routers.residents import load_resident, render_profile_error
from care_portal.templating import render
from care_portal.web_session import CsrfDep, audit, require_roles
from hub.escalation import roster
from hub.escalation.policy import (
    Policy,
    PolicyError,
    check_reaches_someone,
    ensure_default_policies,
    parse_policy,
    policy_from_row,
)
from hub.storage.models import (
    EscalationPolicy,
    Resident,
    ShiftOverride,
    ShiftPattern,
    StaffRole,
    StaffUser,
    Zone,
)

router = APIRouter(tags=["roster"], default_response_class=HTMLResponse)

# Nurses may look at the roster and the policies; coordinators and admins change them.
ViewerDep = Annotated[
    StaffUser,
    Depends(require_roles(StaffRole.NURSE, StaffRole.COORDINATOR, StaffRole.ADMIN)),
]
PlannerDep = Annotated[StaffUser, Depends(require_roles(StaffRole.COORDINATOR, StaffRole.ADMIN))]
PLANNER_ROLES = frozenset({StaffRole.COORDINATOR, StaffRole.ADMIN})
WEEKDAYS = range(7)
SHIFT_NAME_MAX = 32
POLICY_NAME_MAX = 100


@dataclass(frozen=True, slots=True)
class PatternCell:
    id: int
    user: str
    start: str
    end: str


@dataclass(frozen=True, slots=True)
class OverrideRow:
    id: int
    user: str
    replaces: str | None
    starts_at: datetime
    ends_at: datetime
    active: bool


@dataclass(slots=True)
class ZoneRoster:
    id: int
    name: str
    shifts: list[str]
    grid: dict[str, dict[int, list[PatternCell]]]
    overrides: list[OverrideRow]
    on_duty: list[str]


@dataclass(slots=True)
class FormError:
    """A refused form: which form of which zone (or policy), its fields' errors and values."""

    form: str
    target_id: int | None
    errors: dict[str, str] = field(default_factory=dict)
    values: dict[str, str] = field(default_factory=dict)


def _names(session: Session) -> dict[int, str]:
    return {u.id: u.display_name for u in session.scalars(select(StaffUser))}


def zone_rosters(session: Session, now: datetime, tz: ZoneInfo) -> list[ZoneRoster]:
    """Every zone's weekly patterns (shift × weekday), current and coming overrides, on duty."""
    names = _names(session)
    zones = session.scalars(select(Zone).order_by(Zone.name)).all()
    result: list[ZoneRoster] = []
    for zone in zones:
        patterns = session.scalars(
            select(ShiftPattern)
            .where(ShiftPattern.zone_id == zone.id)
            .order_by(ShiftPattern.start, ShiftPattern.name, ShiftPattern.id)
        ).all()
        shifts: list[str] = []
        grid: dict[str, dict[int, list[PatternCell]]] = defaultdict(lambda: defaultdict(list))
        for p in patterns:
            if p.name not in shifts:
                shifts.append(p.name)
            grid[p.name][p.weekday].append(
                PatternCell(
                    id=p.id,
                    user=names.get(p.user_id, f"#{p.user_id}"),
                    start=p.start.strftime("%H:%M"),
                    end=p.end.strftime("%H:%M"),
                )
            )
        overrides = [
            OverrideRow(
                id=o.id,
                user=names.get(o.user_id, f"#{o.user_id}"),
                replaces=(
                    names.get(o.replaces_user_id, f"#{o.replaces_user_id}")
                    if o.replaces_user_id is not None
                    else None
                ),
                starts_at=o.starts_at.astimezone(tz),
                ends_at=o.ends_at.astimezone(tz),
                active=o.starts_at <= now < o.ends_at,
            )
            for o in session.scalars(
                select(ShiftOverride)
                .where(ShiftOverride.zone_id == zone.id, ShiftOverride.ends_at > now)
                .order_by(ShiftOverride.starts_at, ShiftOverride.id)
            )
        ]
        on_duty = [u.display_name for u in roster.on_duty(session, zone.id, now, tz)]
        result.append(
            ZoneRoster(
                id=zone.id,
                name=zone.name,
                shifts=shifts,
                grid=grid,
                overrides=overrides,
                on_duty=on_duty,
            )
        )
    return result


def _roster_page(
    request: Request,
    session: Session,
    *,
    user: StaffUser,
    now: datetime,
    tz: ZoneInfo,
    t: Translator,
    templates: TemplatesDep,
    form_error: FormError | None = None,
) -> HTMLResponse:
    # Display names are encrypted at rest: sorted here, not in SQL (that would sort ciphertexts).
    staff = sorted(
        session.scalars(select(StaffUser).where(StaffUser.active.is_(True))),
        key=lambda u: (u.display_name.casefold(), u.id),
    )
    return render(
        templates,
        request,
        "roster.html",
        t,
        {
            "active_nav": "roster",
            "zones": zone_rosters(session, now, tz),
            "staff": [(u.id, u.display_name) for u in staff],
            "weekdays": list(WEEKDAYS),
            "can_edit": user.role in PLANNER_ROLES,
            "now_local": now.astimezone(tz),
            "form_error": form_error,
            "saved": request.query_params.get("saved"),
        },
        status_code=status.HTTP_400_BAD_REQUEST if form_error else status.HTTP_200_OK,
    )


@router.get("/roster", name="roster")
def roster_page(
    request: Request,
    user: ViewerDep,
    session: SessionDep,
    clock: ClockDep,
    tz: TimezoneDep,
    t: TranslatorDep,
    templates: TemplatesDep,
) -> HTMLResponse:
    """Per zone: the week's shift patterns, overrides, and who is on duty right now."""
    return _roster_page(
        request, session, user=user, now=clock.now(), tz=tz, t=t, templates=templates
    )


def _parse_zone(session: Session, raw: str, errors: dict[str, str], t: Translator) -> int | None:
    try:
        zone_id = int(raw)
    except ValueError:
        zone_id = -1
    if session.get(Zone, zone_id) is None:
        errors["zone_id"] = t("roster.error_zone")
        return None
    return zone_id


def _parse_user(
    session: Session, raw: str, key: str, errors: dict[str, str], t: Translator
) -> int | None:
    try:
        user_id = int(raw)
    except ValueError:
        user_id = -1
    found = session.get(StaffUser, user_id)
    if found is None or not found.active:
        errors[key] = t("roster.error_user")
        return None
    return user_id


def _parse_time(raw: str, key: str, errors: dict[str, str], t: Translator) -> time | None:
    try:
        return time.fromisoformat(raw.strip())
    except ValueError:
        errors[key] = t("roster.error_time")
        return None


def _parse_local(
    raw: str, key: str, errors: dict[str, str], t: Translator, tz: ZoneInfo
) -> datetime | None:
    try:
        value = datetime.fromisoformat(raw.strip())
    except ValueError:
        errors[key] = t("roster.error_datetime")
        return None
    return value.replace(tzinfo=tz) if value.tzinfo is None else value


def _redirect(request: Request, name: str, saved: str) -> RedirectResponse:
    return RedirectResponse(
        request.url_for(name).path + f"?saved={saved}", status_code=status.HTTP_303_SEE_OTHER
    )


@router.post("/roster/patterns", name="roster_add_pattern")
def add_pattern(
    request: Request,
    user: PlannerDep,
    _csrf: CsrfDep,
    session: SessionDep,
    clock: ClockDep,
    tz: TimezoneDep,
    t: TranslatorDep,
    templates: TemplatesDep,
    zone_id: Annotated[str, Form()] = "",
    user_id: Annotated[str, Form()] = "",
    weekday: Annotated[str, Form()] = "",
    name: Annotated[str, Form()] = "",
    start: Annotated[str, Form()] = "",
    end: Annotated[str, Form()] = "",
) -> Response:
    """Add a weekly shift; invalid fields come back on the form (400)."""
    now = clock.now()
    values = {
        "zone_id": zone_id,
        "user_id": user_id,
        "weekday": weekday,
        "name": name,
        "start": start,
        "end": end,
    }
    errors: dict[str, str] = {}
    zone = _parse_zone(session, zone_id, errors, t)
    staff_id = _parse_user(session, user_id, "user_id", errors, t)
    day: int | None = int(weekday) if weekday.strip().isdigit() else None
    if day is None or day not in WEEKDAYS:
        errors["weekday"] = t("roster.error_weekday")
    shift_name = name.strip()
    if not shift_name or len(shift_name) > SHIFT_NAME_MAX:
        errors["name"] = t("roster.error_name", max=SHIFT_NAME_MAX)
    start_t = _parse_time(start, "start", errors, t)
    end_t = _parse_time(end, "end", errors, t)
    if errors or zone is None or staff_id is None or day is None or not start_t or not end_t:
        return _roster_page(
            request,
            session,
            user=user,
            now=now,
            tz=tz,
            t=t,
            templates=templates,
            form_error=FormError("pattern", zone, errors, values),
        )
    pattern = ShiftPattern(
        zone_id=zone, user_id=staff_id, name=shift_name, weekday=day, start=start_t, end=end_t
    )
    session.add(pattern)
    session.flush()
    audit(
        session,
        request=request,
        user=user,
        action="roster.update",
        now=now,
        detail={"op": "pattern.add", "pattern_id": pattern.id, **values},
    )
    session.commit()
    return _redirect(request, "roster", "pattern")


@router.post("/roster/patterns/{pattern_id}/delete", name="roster_remove_pattern")
def remove_pattern(
    request: Request,
    pattern_id: int,
    user: PlannerDep,
    _csrf: CsrfDep,
    session: SessionDep,
    clock: ClockDep,
) -> Response:
    """Remove a weekly shift."""
    pattern = session.get(ShiftPattern, pattern_id)
    if pattern is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such shift pattern")
    detail = {
        "op": "pattern.remove",
        "pattern_id": pattern.id,
        "zone_id": pattern.zone_id,
        "user_id": pattern.user_id,
        "weekday": pattern.weekday,
        "name": pattern.name,
        "start": pattern.start.isoformat(),
        "end": pattern.end.isoformat(),
    }
    session.delete(pattern)
    audit(
        session, request=request, user=user, action="roster.update", now=clock.now(), detail=detail
    )
    session.commit()
    return _redirect(request, "roster", "removed")


@router.post("/roster/overrides", name="roster_add_override")
def add_override(
    request: Request,
    user: PlannerDep,
    _csrf: CsrfDep,
    session: SessionDep,
    clock: ClockDep,
    tz: TimezoneDep,
    t: TranslatorDep,
    templates: TemplatesDep,
    zone_id: Annotated[str, Form()] = "",
    user_id: Annotated[str, Form()] = "",
    replaces_user_id: Annotated[str, Form()] = "",
    starts_at: Annotated[str, Form()] = "",
    ends_at: Annotated[str, Form()] = "",
) -> Response:
    """Add an override or swap (local times); invalid fields come back on the form (400)."""
    now = clock.now()
    values = {
        "zone_id": zone_id,
        "user_id": user_id,
        "replaces_user_id": replaces_user_id,
        "starts_at": starts_at,
        "ends_at": ends_at,
    }
    errors: dict[str, str] = {}
    zone = _parse_zone(session, zone_id, errors, t)
    staff_id = _parse_user(session, user_id, "user_id", errors, t)
    replaced: int | None = None
    if replaces_user_id.strip():
        replaced = _parse_user(session, replaces_user_id, "replaces_user_id", errors, t)
        if replaced is not None and replaced == staff_id:
            errors["replaces_user_id"] = t("roster.error_same_user")
    start_at = _parse_local(starts_at, "starts_at", errors, t, tz)
    end_at = _parse_local(ends_at, "ends_at", errors, t, tz)
    if start_at is not None and end_at is not None:
        if end_at <= start_at:
            errors["ends_at"] = t("roster.error_order")
        elif end_at <= now:
            errors["ends_at"] = t("roster.error_past")
    if errors or zone is None or staff_id is None or start_at is None or end_at is None:
        return _roster_page(
            request,
            session,
            user=user,
            now=now,
            tz=tz,
            t=t,
            templates=templates,
            form_error=FormError("override", zone, errors, values),
        )
    override = ShiftOverride(
        zone_id=zone,
        user_id=staff_id,
        replaces_user_id=replaced,
        starts_at=start_at,
        ends_at=end_at,
        created_at=now,
    )
    session.add(override)
    session.flush()
    audit(
        session,
        request=request,
        user=user,
        action="roster.update",
        now=now,
        detail={"op": "override.add", "override_id": override.id, **values},
    )
    session.commit()
    return _redirect(request, "roster", "override")


@router.post("/roster/overrides/{override_id}/delete", name="roster_remove_override")
def remove_override(
    request: Request,
    override_id: int,
    user: PlannerDep,
    _csrf: CsrfDep,
    session: SessionDep,
    clock: ClockDep,
) -> Response:
    """Remove an override."""
    override = session.get(ShiftOverride, override_id)
    if override is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such override")
    detail = {
        "op": "override.remove",
        "override_id": override.id,
        "zone_id": override.zone_id,
        "user_id": override.user_id,
        "replaces_user_id": override.replaces_user_id,
        "starts_at": override.starts_at.isoformat(),
        "ends_at": override.ends_at.isoformat(),
    }
    session.delete(override)
    audit(
        session, request=request, user=user, action="roster.update", now=clock.now(), detail=detail
    )
    session.commit()
    return _redirect(request, "roster", "removed")


# --- escalation policies ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PolicyView:
    id: int
    name: str
    default_for: str | None
    repeat_rounds: int
    policy: Policy | None
    error: str | None
    steps_json: str
    residents: int
    warnings: list[tuple[str, list[str]]]


def policy_views(session: Session, now: datetime, tz: ZoneInfo) -> list[PolicyView]:
    """Every stored policy, parsed, with who-is-reachable warnings per zone right now."""
    zones = session.scalars(select(Zone).order_by(Zone.name)).all()
    usage: dict[int | None, int] = {
        policy_id: count
        for policy_id, count in session.execute(
            select(Resident.escalation_policy_id, func.count())
            .where(Resident.escalation_policy_id.is_not(None))
            .group_by(Resident.escalation_policy_id)
        )
    }
    views: list[PolicyView] = []
    rows = session.scalars(
        select(EscalationPolicy).order_by(
            EscalationPolicy.default_for_severity.is_(None), EscalationPolicy.name
        )
    ).all()
    for row in rows:
        policy: Policy | None = None
        error: str | None = None
        try:
            policy = policy_from_row(row)
        except PolicyError as exc:
            error = str(exc)
        warnings = (
            [(z.name, check_reaches_someone(session, policy, z.id, tz, now)) for z in zones]
            if policy is not None
            else []
        )
        views.append(
            PolicyView(
                id=row.id,
                name=row.name,
                default_for=row.default_for_severity,
                repeat_rounds=row.repeat_rounds,
                policy=policy,
                error=error,
                steps_json=json.dumps(row.steps, indent=2, ensure_ascii=False),
                residents=usage.get(row.id, 0),
                warnings=[(zone, w) for zone, w in warnings if w],
            )
        )
    return views


def _policies_page(
    request: Request,
    session: Session,
    *,
    user: StaffUser,
    now: datetime,
    tz: ZoneInfo,
    t: Translator,
    templates: TemplatesDep,
    form_error: FormError | None = None,
) -> HTMLResponse:
    return render(
        templates,
        request,
        "policies.html",
        t,
        {
            "active_nav": "policies",
            "policies": policy_views(session, now, tz),
            "can_edit": user.role in PLANNER_ROLES,
            "form_error": form_error,
            "saved": request.query_params.get("saved"),
        },
        status_code=status.HTTP_400_BAD_REQUEST if form_error else status.HTTP_200_OK,
    )


@router.get("/policies", name="policies")
def policies_page(
    request: Request,
    user: ViewerDep,
    session: SessionDep,
    clock: ClockDep,
    tz: TimezoneDep,
    t: TranslatorDep,
    templates: TemplatesDep,
) -> HTMLResponse:
    """The escalation policies with their steps; the built-in defaults appear when missing."""
    now = clock.now()
    ensure_default_policies(session, now)
    session.commit()
    return _policies_page(request, session, user=user, now=now, tz=tz, t=t, templates=templates)


def _parse_policy_form(
    name: str, repeat_rounds: str, steps: str
) -> tuple[Policy | None, dict[str, str]]:
    """The policy of a form, or the reason it is refused (keyed by the field to blame)."""
    try:
        steps_data: Any = json.loads(steps)
    except json.JSONDecodeError as exc:
        return None, {"steps": f"JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"}
    rounds: Any = int(repeat_rounds) if repeat_rounds.strip().isdigit() else repeat_rounds
    try:
        return parse_policy(
            {"name": name.strip(), "repeat_rounds": rounds, "steps": steps_data}
        ), {}
    except PolicyError as exc:
        reason = str(exc)
        key = "steps"
        if "repeat_rounds" in reason:
            key = "repeat_rounds"
        elif "name:" in reason:
            key = "name"
        return None, {key: reason}


def _save_policy(
    request: Request,
    session: Session,
    *,
    row: EscalationPolicy | None,
    user: StaffUser,
    now: datetime,
    tz: ZoneInfo,
    t: Translator,
    templates: TemplatesDep,
    name: str,
    repeat_rounds: str,
    steps: str,
) -> Response:
    values = {"name": name, "repeat_rounds": repeat_rounds, "steps": steps}
    policy, errors = _parse_policy_form(name, repeat_rounds, steps)
    if policy is not None:
        clash = session.scalar(
            select(EscalationPolicy.id).where(EscalationPolicy.name == policy.name)
        )
        if clash is not None and (row is None or clash != row.id):
            errors["name"] = t("policies.error_name_taken", name=policy.name)
    if policy is None or errors:
        return _policies_page(
            request,
            session,
            user=user,
            now=now,
            tz=tz,
            t=t,
            templates=templates,
            form_error=FormError("policy", row.id if row else None, errors, values),
        )
    steps_json = [step.model_dump(mode="json") for step in policy.steps]
    if row is None:
        row = EscalationPolicy(
            name=policy.name,
            repeat_rounds=policy.repeat_rounds,
            default_for_severity=None,
            steps=steps_json,
            created_at=now,
        )
        session.add(row)
        op = "policy.add"
    else:
        previous = {"name": row.name, "repeat_rounds": row.repeat_rounds, "steps": row.steps}
        row.name = policy.name
        row.repeat_rounds = policy.repeat_rounds
        row.steps = steps_json
        op = "policy.edit"
    session.flush()
    detail: dict[str, Any] = {
        "op": op,
        "policy_id": row.id,
        "policy": policy.model_dump(mode="json"),
    }
    if op == "policy.edit":
        detail["previous"] = previous
    audit(session, request=request, user=user, action="policy.update", now=now, detail=detail)
    session.commit()
    return _redirect(request, "policies", "policy")


@router.post("/policies", name="policy_add")
def add_policy(
    request: Request,
    user: PlannerDep,
    _csrf: CsrfDep,
    session: SessionDep,
    clock: ClockDep,
    tz: TimezoneDep,
    t: TranslatorDep,
    templates: TemplatesDep,
    name: Annotated[str, Form()] = "",
    repeat_rounds: Annotated[str, Form()] = "",
    steps: Annotated[str, Form()] = "",
) -> Response:
    """Add a policy (for residents who need their own); a policy reaching nobody is refused."""
    return _save_policy(
        request,
        session,
        row=None,
        user=user,
        now=clock.now(),
        tz=tz,
        t=t,
        templates=templates,
        name=name,
        repeat_rounds=repeat_rounds,
        steps=steps,
    )


@router.post("/policies/{policy_id}", name="policy_edit")
def edit_policy(
    request: Request,
    policy_id: int,
    user: PlannerDep,
    _csrf: CsrfDep,
    session: SessionDep,
    clock: ClockDep,
    tz: TimezoneDep,
    t: TranslatorDep,
    templates: TemplatesDep,
    name: Annotated[str, Form()] = "",
    repeat_rounds: Annotated[str, Form()] = "",
    steps: Annotated[str, Form()] = "",
) -> Response:
    """Change a policy; running alarms keep the snapshot they started with."""
    row = session.get(EscalationPolicy, policy_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such policy")
    return _save_policy(
        request,
        session,
        row=row,
        user=user,
        now=clock.now(),
        tz=tz,
        t=t,
        templates=templates,
        name=name,
        repeat_rounds=repeat_rounds,
        steps=steps,
    )


@router.post("/residents/{resident_id}/policy", name="resident_policy")
def set_resident_policy(
    request: Request,
    resident_id: int,
    user: PlannerDep,
    _csrf: CsrfDep,
    session: SessionDep,
    clock: ClockDep,
    tz: TimezoneDep,
    t: TranslatorDep,
    templates: TemplatesDep,
    policy_id: Annotated[str, Form()] = "",
) -> Response:
    """Give a resident their own escalation policy, or back to the severity's default ("")."""
    now = clock.now()
    resident = load_resident(session, resident_id)
    chosen: int | None = None
    if policy_id.strip():
        row = session.get(EscalationPolicy, int(policy_id)) if policy_id.isdigit() else None
        error: str | None = None
        if row is None:
            error = t("policies.error_unknown")
        else:
            try:
                policy_from_row(row)
            except PolicyError as exc:
                error = str(exc)
        if row is None or error is not None:
            return render_profile_error(
                request,
                session,
                resident,
                user=user,
                now=now,
                tz=tz,
                t=t,
                templates=templates,
                errors={"policy_error": error},
            )
        chosen = row.id
    previous = resident.escalation_policy_id
    resident.escalation_policy_id = chosen
    audit(
        session,
        request=request,
        user=user,
        action="policy.update",
        now=now,
        resident_id=resident.id,
        detail={"op": "resident.policy", "from": previous, "to": chosen},
    )
    session.commit()
    return RedirectResponse(
        request.url_for("resident", resident_id=resident.id).path + "?saved=policy",
        status_code=status.HTTP_303_SEE_OTHER,
    )
