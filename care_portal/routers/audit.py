"""The audit log for admins (search) and a resident's access report as CSV (Normen)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import HTMLResponse
from sqlalchemy import ColumnElement, func, or_, select
from starlette.responses import Response

from care_portal.deps import ClockDep, SessionDep, TemplatesDep, TimezoneDep, TranslatorDep
from care_portal.i18n import Translator
from care_portal.reports_calc import to_csv
from care_portal.templating import render
from care_portal.web_session import audit, require_roles
from hub.storage.models import AuditEntry, Resident, StaffRole, StaffUser

router = APIRouter(tags=["audit"], default_response_class=HTMLResponse)

AdminDep = Annotated[StaffUser, Depends(require_roles(StaffRole.ADMIN))]
AccessReportDep = Annotated[
    StaffUser, Depends(require_roles(StaffRole.COORDINATOR, StaffRole.ADMIN))
]
PAGE_SIZE = 50
FILTER_FIELDS = ("username", "action", "resident", "from", "to")
ACCESS_REPORT_HEADER = ("time", "username", "role", "action", "ip")


@dataclass(frozen=True, slots=True)
class AuditFilters:
    """A search of the audit log; dates are local days in the municipality's zone, inclusive."""

    username: str = ""
    action: str = ""
    resident_id: int | None = None
    first: date | None = None
    last: date | None = None

    def conditions(self, tz: ZoneInfo) -> list[ColumnElement[bool]]:
        """SQL conditions: username exact (any case); action exact or a prefix up to a dot."""
        where: list[ColumnElement[bool]] = []
        if self.username:
            where.append(func.lower(AuditEntry.username) == self.username.lower())
        if self.action:
            where.append(
                or_(
                    AuditEntry.action == self.action,
                    AuditEntry.action.startswith(self.action + ".", autoescape=True),
                )
            )
        if self.resident_id is not None:
            where.append(AuditEntry.resident_id == self.resident_id)
        if self.first is not None:
            where.append(AuditEntry.at >= datetime.combine(self.first, time(0), tzinfo=tz))
        if self.last is not None:
            end = datetime.combine(self.last + timedelta(days=1), time(0), tzinfo=tz)
            where.append(AuditEntry.at < end)
        return where

    def detail(self) -> dict[str, Any]:
        """The filters as the search's own audit entry records them (unset ones left out)."""
        values: dict[str, Any] = {
            "username": self.username or None,
            "action": self.action or None,
            "resident_id": self.resident_id,
            "from": self.first.isoformat() if self.first else None,
            "to": self.last.isoformat() if self.last else None,
        }
        return {k: v for k, v in values.items() if v is not None}


@dataclass(frozen=True, slots=True)
class AuditRow:
    at: datetime  # local time
    username: str
    role: str
    action: str
    resident_id: int | None
    ip: str | None


def parse_filters(params: dict[str, str], t: Translator) -> tuple[AuditFilters, list[str]]:
    """The search's filters from the query string, and readable errors for the bad ones."""
    errors: list[str] = []
    resident_id: int | None = None
    raw_resident = params.get("resident", "").strip()
    if raw_resident:
        if raw_resident.isdigit():
            resident_id = int(raw_resident)
        else:
            errors.append(t("audit.error_resident"))
    days: dict[str, date | None] = {"from": None, "to": None}
    for field in days:
        raw = params.get(field, "").strip()
        if raw:
            try:
                days[field] = date.fromisoformat(raw)
            except ValueError:
                errors.append(t("audit.error_date", value=raw))
    first, last = days["from"], days["to"]
    if first is not None and last is not None and last < first:
        errors.append(t("audit.error_order"))
    filters = AuditFilters(
        username=params.get("username", "").strip()[:64],
        action=params.get("action", "").strip()[:64],
        resident_id=resident_id,
        first=first,
        last=last,
    )
    return filters, errors


def _page_number(raw: str | None) -> int:
    return int(raw) if raw is not None and raw.isdigit() and int(raw) >= 1 else 1


@router.get("/audit", name="audit")
def audit_page(
    request: Request,
    user: AdminDep,
    session: SessionDep,
    clock: ClockDep,
    tz: TimezoneDep,
    t: TranslatorDep,
    templates: TemplatesDep,
) -> HTMLResponse:
    """Search the audit log, newest first, 50 a page; the search is itself audited."""
    params = dict(request.query_params)
    query = {field: params.get(field, "") for field in FILTER_FIELDS}
    filters, errors = parse_filters(params, t)
    page = _page_number(params.get("page"))
    context: dict[str, object] = {
        "active_nav": "audit",
        "query": query,
        "errors": errors,
        "rows": [],
        "total": 0,
        "page": page,
        "pages": 0,
        "previous_url": None,
        "next_url": None,
    }
    if errors:
        return render(
            templates, request, "audit.html", t, context, status_code=status.HTTP_400_BAD_REQUEST
        )
    where = filters.conditions(tz)
    total = session.scalar(select(func.count()).select_from(AuditEntry).where(*where)) or 0
    pages = max(1, -(-total // PAGE_SIZE))
    page = min(page, pages)
    entries = session.scalars(
        select(AuditEntry)
        .where(*where)
        .order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
        .offset((page - 1) * PAGE_SIZE)
        .limit(PAGE_SIZE)
    ).all()
    rows = [
        AuditRow(
            at=e.at.astimezone(tz),
            username=e.username,
            role=e.role,
            action=e.action,
            resident_id=e.resident_id,
            ip=e.ip,
        )
        for e in entries
    ]
    audit(
        session,
        request=request,
        user=user,
        action="audit.search",
        now=clock.now(),
        resident_id=filters.resident_id,
        detail={**filters.detail(), "page": page},
    )
    session.commit()
    base = request.url_for("audit").path

    def page_url(number: int) -> str:
        return base + "?" + urlencode({**{k: v for k, v in query.items() if v}, "page": number})

    context.update(
        {
            "rows": rows,
            "total": total,
            "page": page,
            "pages": pages,
            "previous_url": page_url(page - 1) if page > 1 else None,
            "next_url": page_url(page + 1) if page < pages else None,
        }
    )
    return render(templates, request, "audit.html", t, context)


@router.get("/residents/{resident_id}/access-report.csv", name="resident_access_report")
def access_report_csv(
    request: Request,
    resident_id: int,
    user: AccessReportDep,
    session: SessionDep,
    clock: ClockDep,
    tz: TimezoneDep,
) -> Response:
    """Who looked at or changed the resident's data, oldest first, as ``text/csv``; audited."""
    if session.get(Resident, resident_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such resident")
    now = clock.now()
    entries = session.scalars(
        select(AuditEntry)
        .where(AuditEntry.resident_id == resident_id)
        .order_by(AuditEntry.at, AuditEntry.id)
    ).all()
    rows = [
        [e.at.astimezone(tz).isoformat(timespec="seconds"), e.username, e.role, e.action, e.ip]
        for e in entries
    ]
    audit(
        session,
        request=request,
        user=user,
        action="resident.access_report",
        now=now,
        resident_id=resident_id,
        detail={"entries": len(rows)},
    )
    session.commit()
    filename = f"carehub-access-report-{resident_id}-{now.astimezone(tz).date().isoformat()}.csv"
    return Response(
        to_csv(ACCESS_REPORT_HEADER, rows),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
        },
    )
