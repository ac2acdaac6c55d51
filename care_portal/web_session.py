"""Browser sign-in state: server-side sessions, the signed-in user, CSRF, and the audit log.

The cookie ``carehub_session`` holds a random token; the database keeps only its SHA-256
(``web_sessions``), the CSRF token, whether the second factor was given, and the expiry.
Pages depend on ``WebUserDep`` (signed in, second factor done) and state-changing forms on
``CsrfDep``. ``audit()`` records every read or change of a resident's data (Normen).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, Response, status
from sqlalchemy import select
from sqlalchemy.orm import Session

from care_portal.deps import ClockDep, SessionDep, SettingsDep
from hub.storage.models import AuditEntry, StaffRole, StaffUser, WebSession

SESSION_COOKIE = "carehub_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"


class LoginRequired(Exception):
    """No valid session: the exception handler redirects to /login (htmx: HX-Redirect)."""

    def __init__(self, next_url: str = "/") -> None:
        super().__init__(next_url)
        self.next_url = next_url


def _sha256(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def create_session(
    session: Session,
    user: StaffUser,
    *,
    now: datetime,
    ttl_s: int,
    request: Request | None = None,
    mfa_passed: bool,
) -> tuple[str, WebSession]:
    """Start a browser session; returns the cookie value (shown once) and the row."""
    token = secrets.token_urlsafe(32)
    row = WebSession(
        token_sha256=_sha256(token),
        user_id=user.id,
        csrf_token=secrets.token_urlsafe(32),
        mfa_passed=mfa_passed,
        created_at=now,
        last_seen_at=now,
        expires_at=now + timedelta(seconds=ttl_s),
        ip=client_ip(request) if request is not None else None,
        user_agent=(request.headers.get("user-agent", "")[:300] if request is not None else None),
    )
    session.add(row)
    session.flush()
    return token, row


def set_session_cookie(response: Response, token: str, *, secure: bool, max_age: int) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=max_age,
        httponly=True,
        secure=secure,
        samesite="strict",
        path="/",
    )


def clear_session_cookie(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/")


def session_for_request(session: Session, request: Request, now: datetime) -> WebSession | None:
    """The valid (not expired, not revoked) session of this browser, if any."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    row = session.scalar(select(WebSession).where(WebSession.token_sha256 == _sha256(token)))
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        return None
    return row


def get_web_session(request: Request, session: SessionDep, clock: ClockDep) -> WebSession:
    """The browser's session with both factors done, else LoginRequired."""
    row = session_for_request(session, request, clock.now())
    if row is None or not row.mfa_passed:
        raise LoginRequired(request.url.path)
    request.state.web_session = row
    return row


WebSessionDep = Annotated[WebSession, Depends(get_web_session)]


def get_web_user(request: Request, session: SessionDep, web: WebSessionDep) -> StaffUser:
    user = session.get(StaffUser, web.user_id)
    if user is None or not user.active:
        raise LoginRequired(request.url.path)
    request.state.user = user
    return user


WebUserDep = Annotated[StaffUser, Depends(get_web_user)]


def require_roles(*roles: StaffRole) -> Callable[[StaffUser], StaffUser]:
    """A dependency: the signed-in user, if their role is one of ``roles`` (else 403)."""
    allowed = set(roles)

    def check(user: WebUserDep) -> StaffUser:
        if user.role not in allowed:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "your role may not see this")
        return user

    return check


async def check_csrf(request: Request, web: WebSession) -> None:
    """403 unless a state-changing request carries ``web``'s CSRF token (form field or header).

    ``verify_csrf`` uses it for signed-in pages; the sign-in routes use it for sessions that
    still wait for their second factor.
    """
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    sent = request.headers.get(CSRF_HEADER)
    if not sent:
        form = await request.form()
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if not sent or not secrets.compare_digest(sent.encode(), web.csrf_token.encode()):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "missing or wrong CSRF token")


async def verify_csrf(request: Request, web: WebSessionDep) -> None:
    """State-changing requests carry the session's CSRF token (form field or header)."""
    await check_csrf(request, web)


CsrfDep = Annotated[None, Depends(verify_csrf)]


def csrf_token(request: Request) -> str:
    """For templates: the CSRF token of the signed-in session ("" when signed out)."""
    web: WebSession | None = getattr(request.state, "web_session", None)
    return web.csrf_token if web is not None else ""


def audit(
    session: Session,
    *,
    request: Request | None,
    user: StaffUser | None,
    action: str,
    now: datetime,
    resident_id: int | None = None,
    detail: dict[str, Any] | None = None,
) -> AuditEntry:
    """Record who did what to which resident's data, when and from where (append-only)."""
    entry = AuditEntry(
        at=now,
        user_id=user.id if user is not None else None,
        username=user.username if user is not None else "-",
        role=user.role.value if user is not None else "-",
        action=action,
        resident_id=resident_id,
        ip=client_ip(request) if request is not None else None,
        detail=detail or {},
    )
    session.add(entry)
    return entry


def audit_many(
    session: Session,
    *,
    request: Request | None,
    user: StaffUser,
    action: str,
    now: datetime,
    resident_ids: Iterable[int],
    detail: dict[str, Any] | None = None,
) -> None:
    """One entry per resident whose data a page showed (a list shows many)."""
    for resident_id in sorted(set(resident_ids)):
        audit(
            session,
            request=request,
            user=user,
            action=action,
            now=now,
            resident_id=resident_id,
            detail=detail,
        )


__all__ = [
    "CSRF_FIELD",
    "CSRF_HEADER",
    "SESSION_COOKIE",
    "CsrfDep",
    "LoginRequired",
    "SettingsDep",
    "WebSessionDep",
    "WebUserDep",
    "audit",
    "audit_many",
    "check_csrf",
    "clear_session_cookie",
    "create_session",
    "csrf_token",
    "require_roles",
    "session_for_request",
    "set_session_cookie",
]
