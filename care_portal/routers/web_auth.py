"""Browser sign-in for staff: password, TOTP or recovery code, TOTP enrolment, and sign-out.

A password alone gives a *pending* session (``WebSession.mfa_passed`` False, short-lived) when a
second factor is due. ``PendingDep`` accepts such a session, so it can reach only the TOTP step
and the enrolment page here; every other page needs ``WebUserDep``, which refuses it. Passing the
second factor replaces the pending session by a fresh full one (new cookie, new CSRF token).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Final
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from care_portal.auth import authenticate
from care_portal.deps import (
    ClockDep,
    SessionDep,
    SettingsDep,
    TemplatesDep,
    TimezoneDep,
    TranslatorDep,
)
from care_portal.i18n import Translator
from care_portal.security import lockout, recovery, totp
from care_portal.security.lockout import AddressLimiter, LockState
from care_portal.templating import render
from care_portal.web_session import (
    LoginRequired,
    audit,
    check_csrf,
    clear_session_cookie,
    client_ip,
    create_session,
    session_for_request,
    set_session_cookie,
)
from hub.config import Settings
from hub.storage.models import StaffUser, WebSession

logger = logging.getLogger(__name__)

router = APIRouter(tags=["sign-in"], default_response_class=HTMLResponse)

# How long a password-only session may wait for its second factor (or enrolment).
PENDING_TTL_S: Final = 15 * 60
USERNAME_MAX_CHARS: Final = 64
PASSWORD_MAX_CHARS: Final = 1024
CODE_MAX_CHARS: Final = 64

_limiter_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class PendingSignIn:
    """A valid browser session (second factor done or not) and its active user."""

    web: WebSession
    user: StaffUser


def get_pending(request: Request, session: SessionDep, clock: ClockDep) -> PendingSignIn:
    """Any valid session of an active user, also one still waiting for its second factor."""
    web = session_for_request(session, request, clock.now())
    user = session.get(StaffUser, web.user_id) if web is not None else None
    if web is None or user is None or not user.active:
        raise LoginRequired(_safe_next(request.query_params.get("next")))
    request.state.web_session = web  # csrf_token() in the page's forms
    return PendingSignIn(web=web, user=user)


PendingDep = Annotated[PendingSignIn, Depends(get_pending)]


async def get_pending_with_csrf(request: Request, pending: PendingDep) -> PendingSignIn:
    """``get_pending``, for a form post that must carry the session's CSRF token (else 403)."""
    await check_csrf(request, pending.web)
    return pending


PendingCsrfDep = Annotated[PendingSignIn, Depends(get_pending_with_csrf)]


def totp_required(settings: Settings) -> bool:
    """Whether staff must have a second factor (always, except in demo mode or when turned off)."""
    return settings.security.require_totp and not settings.demo_mode


def _safe_next(value: str | None) -> str:
    """A local path to go to after sign-in; anything else (other hosts, schemes) becomes "/"."""
    if (
        not value
        or not value.startswith("/")
        or value.startswith("//")
        or "\\" in value
        or any(ord(ch) < 32 for ch in value)
        or value.startswith(("/login", "/logout"))
    ):
        return "/"
    return value


def _limiter(request: Request) -> AddressLimiter:
    """The app's in-memory limiter of failed sign-ins per client address."""
    with _limiter_lock:
        limiter: AddressLimiter | None = getattr(request.app.state, "login_limiter", None)
        if limiter is None:
            limiter = AddressLimiter()
            request.app.state.login_limiter = limiter
        return limiter


def _address(request: Request) -> str:
    return client_ip(request) or "-"


def _redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=status.HTTP_303_SEE_OTHER)


def _with_next(path: str, next_url: str) -> str:
    return path if next_url == "/" else f"{path}?{urlencode({'next': next_url})}"


def _lock_state(user: StaffUser) -> LockState:
    return LockState(failed=user.failed_logins, locked_until=user.locked_until)


def _apply(user: StaffUser, state: LockState) -> None:
    user.failed_logins = state.failed
    user.locked_until = state.locked_until


def _locked_message(t: Translator, tz: TimezoneDep, until: datetime) -> str:
    return t("auth.locked", time=t.format_time(until.astimezone(tz)))


def _login_page(
    request: Request,
    templates: TemplatesDep,
    t: Translator,
    *,
    next_url: str,
    username: str = "",
    error: str | None = None,
    status_code: int = status.HTTP_200_OK,
) -> HTMLResponse:
    return render(
        templates,
        request,
        "login.html",
        t,
        {"next": next_url, "username": username, "error": error},
        status_code=status_code,
    )


def _start_session(
    session: Session,
    request: Request,
    user: StaffUser,
    *,
    now: datetime,
    settings: Settings,
    mfa_passed: bool,
) -> tuple[str, WebSession, int]:
    ttl_s = settings.security.session_ttl_s if mfa_passed else PENDING_TTL_S
    token, row = create_session(
        session, user, now=now, ttl_s=ttl_s, request=request, mfa_passed=mfa_passed
    )
    return token, row, ttl_s


def _complete(
    session: Session,
    request: Request,
    user: StaffUser,
    *,
    now: datetime,
    settings: Settings,
    method: str,
    pending: WebSession | None,
) -> tuple[str, int]:
    """Both factors done: replace any pending session by a full one and record the sign-in."""
    if pending is not None:
        pending.revoked_at = now
    token, row, ttl_s = _start_session(
        session, request, user, now=now, settings=settings, mfa_passed=True
    )
    _apply(user, lockout.after_success())
    audit(session, request=request, user=user, action="login", now=now, detail={"mfa": method})
    request.state.web_session = row
    request.state.user = user
    logger.info("%s signed in (%s)", user.username, method)
    return token, ttl_s


def _refuse_second_factor(
    session: Session,
    request: Request,
    pending: PendingSignIn,
    *,
    now: datetime,
    settings: Settings,
    step: str,
) -> LockState:
    """Count a wrong code against the account (and address); returns the new lock state."""
    state = lockout.after_failure(
        _lock_state(pending.user),
        now,
        max_failures=settings.security.login_max_failures,
        lockout_s=settings.security.lockout_s,
    )
    _apply(pending.user, state)
    _limiter(request).record_failure(_address(request), now)
    audit(
        session,
        request=request,
        user=pending.user,
        action="login_failed",
        now=now,
        detail={"step": step},
    )
    if lockout.is_locked(state, now):
        pending.web.revoked_at = now
        audit(
            session,
            request=request,
            user=pending.user,
            action="login_locked",
            now=now,
            detail={"until": state.locked_until.isoformat() if state.locked_until else None},
        )
    return state


@router.get("/login", name="login")
def login_page(
    request: Request,
    session: SessionDep,
    clock: ClockDep,
    t: TranslatorDep,
    templates: TemplatesDep,
    next: str | None = None,
) -> Response:
    """The sign-in form (or straight on, for a browser that is already signed in)."""
    next_url = _safe_next(next)
    web = session_for_request(session, request, clock.now())
    if web is not None and web.mfa_passed:
        return _redirect(next_url)
    return _login_page(request, templates, t, next_url=next_url)


@router.post("/login", name="login_submit")
def login_submit(
    request: Request,
    session: SessionDep,
    clock: ClockDep,
    settings: SettingsDep,
    tz: TimezoneDep,
    t: TranslatorDep,
    templates: TemplatesDep,
    username: Annotated[str, Form(max_length=USERNAME_MAX_CHARS)],
    password: Annotated[str, Form(max_length=PASSWORD_MAX_CHARS)],
    next: Annotated[str, Form()] = "/",
) -> Response:
    """Check the password; then sign in, or ask for the second factor, or for enrolment."""
    now = clock.now()
    next_url = _safe_next(next)
    username = username.strip()
    address = _address(request)
    limiter = _limiter(request)
    if limiter.blocked(address, now):
        audit(
            session,
            request=request,
            user=None,
            action="login_failed",
            now=now,
            detail={"username": username, "reason": "address_rate_limited"},
        )
        session.commit()
        return _login_page(
            request,
            templates,
            t,
            next_url=next_url,
            username=username,
            error=t("auth.rate_limited"),
            status_code=status.HTTP_429_TOO_MANY_REQUESTS,
        )

    user = session.scalar(select(StaffUser).where(StaffUser.username == username))
    if user is not None and user.active and lockout.is_locked(_lock_state(user), now):
        # Locked whatever the password: a locked account tells nothing about the password.
        limiter.record_failure(address, now)
        assert user.locked_until is not None
        audit(
            session,
            request=request,
            user=user,
            action="login_locked",
            now=now,
            detail={"until": user.locked_until.isoformat()},
        )
        session.commit()
        return _login_page(
            request,
            templates,
            t,
            next_url=next_url,
            username=username,
            error=_locked_message(t, tz, user.locked_until),
            status_code=status.HTTP_423_LOCKED,
        )

    if authenticate(session, username, password) is None or user is None:
        limiter.record_failure(address, now)
        error = t("auth.failed")
        status_code = status.HTTP_400_BAD_REQUEST
        if user is None:
            audit(
                session,
                request=request,
                user=None,
                action="login_failed",
                now=now,
                detail={"username": username, "reason": "unknown_user"},
            )
        elif not user.active:
            audit(
                session,
                request=request,
                user=user,
                action="login_failed",
                now=now,
                detail={"reason": "inactive"},
            )
        else:
            state = lockout.after_failure(
                _lock_state(user),
                now,
                max_failures=settings.security.login_max_failures,
                lockout_s=settings.security.lockout_s,
            )
            _apply(user, state)
            audit(
                session,
                request=request,
                user=user,
                action="login_failed",
                now=now,
                detail={"reason": "password", "failed": state.failed},
            )
            if state.locked_until is not None:
                audit(
                    session,
                    request=request,
                    user=user,
                    action="login_locked",
                    now=now,
                    detail={"until": state.locked_until.isoformat()},
                )
                error = _locked_message(t, tz, state.locked_until)
                status_code = status.HTTP_423_LOCKED
        session.commit()
        return _login_page(
            request,
            templates,
            t,
            next_url=next_url,
            username=username,
            error=error,
            status_code=status_code,
        )

    if user.totp_enabled and user.totp_secret:
        target = _with_next("/login/totp", next_url)
    elif totp_required(settings):
        target = _with_next("/account/totp", next_url)
    else:
        token, ttl_s = _complete(
            session, request, user, now=now, settings=settings, method="none", pending=None
        )
        session.commit()
        response = _redirect(next_url)
        set_session_cookie(response, token, secure=settings.security.secure_cookies, max_age=ttl_s)
        return response

    # The password was right; a second factor is still due. Failures so far are forgiven only
    # once it is given.
    token, _row, ttl_s = _start_session(
        session, request, user, now=now, settings=settings, mfa_passed=False
    )
    session.commit()
    response = _redirect(target)
    set_session_cookie(response, token, secure=settings.security.secure_cookies, max_age=ttl_s)
    return response


@router.get("/login/totp", name="login_totp")
def login_totp_page(
    request: Request,
    pending: PendingDep,
    t: TranslatorDep,
    templates: TemplatesDep,
    next: str | None = None,
) -> Response:
    """Ask for the authenticator's code (or a recovery code)."""
    next_url = _safe_next(next)
    if pending.web.mfa_passed:
        return _redirect(next_url)
    if not pending.user.totp_enabled:
        return _redirect(_with_next("/account/totp", next_url))
    return render(templates, request, "login_totp.html", t, {"next": next_url, "error": None})


@router.post("/login/totp", name="login_totp_submit")
def login_totp_submit(
    request: Request,
    pending: PendingCsrfDep,
    session: SessionDep,
    clock: ClockDep,
    settings: SettingsDep,
    tz: TimezoneDep,
    t: TranslatorDep,
    templates: TemplatesDep,
    code: Annotated[str, Form(max_length=CODE_MAX_CHARS)] = "",
    recovery_code: Annotated[str, Form(max_length=CODE_MAX_CHARS)] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    """The second factor: a TOTP code or one recovery code; wrong ones count toward lockout."""
    now = clock.now()
    next_url = _safe_next(next)
    user = pending.user
    if pending.web.mfa_passed:
        return _redirect(next_url)
    if not user.totp_enabled or not user.totp_secret:
        return _redirect(_with_next("/account/totp", next_url))
    if lockout.is_locked(_lock_state(user), now):
        assert user.locked_until is not None
        pending.web.revoked_at = now
        session.commit()
        return _locked_out(request, templates, t, tz, user, user.locked_until, next_url)

    method: str | None = None
    code = code.strip()
    recovery_code = recovery_code.strip()
    if code and _claim_totp_code(session, user, code, now=now):
        method = "totp"
    elif recovery_code:
        left = recovery.consume(list(user.recovery_codes or []), recovery_code)
        if left is not None:
            user.recovery_codes = left
            method = "recovery_code"
            audit(
                session,
                request=request,
                user=user,
                action="recovery_code_used",
                now=now,
                detail={"remaining": len(left)},
            )

    if method is None:
        step = "recovery_code" if recovery_code and not code else "totp"
        state = _refuse_second_factor(
            session, request, pending, now=now, settings=settings, step=step
        )
        session.commit()
        if state.locked_until is not None and lockout.is_locked(state, now):
            return _locked_out(request, templates, t, tz, user, state.locked_until, next_url)
        error = t("auth.recovery_wrong") if step == "recovery_code" else t("auth.totp_wrong")
        return render(
            templates,
            request,
            "login_totp.html",
            t,
            {"next": next_url, "error": error},
            status_code=status.HTTP_400_BAD_REQUEST,
        )

    token, ttl_s = _complete(
        session, request, user, now=now, settings=settings, method=method, pending=pending.web
    )
    session.commit()
    response = _redirect(next_url)
    set_session_cookie(response, token, secure=settings.security.secure_cookies, max_age=ttl_s)
    return response


def _claim_totp_code(session: Session, user: StaffUser, code: str, *, now: datetime) -> bool:
    """Accept ``code`` once: its time step must be later than the last one ``user`` used.

    The step is recorded with a conditional UPDATE, so of two sign-ins racing with one code
    (a replay from a proxy log, say) only the first wins; a refused replay counts toward the
    lockout like a wrong code. The enrolment code is recorded too, so it cannot sign in again.
    """
    if not user.totp_secret:
        return False
    step = totp.accepted_step(user.totp_secret, code, now=now, last_step=user.totp_last_step)
    if step is None:
        return False
    claimed = session.execute(
        update(StaffUser)
        .where(
            StaffUser.id == user.id,
            or_(StaffUser.totp_last_step.is_(None), StaffUser.totp_last_step < step),
        )
        .values(totp_last_step=step)
        .execution_options(synchronize_session="fetch")
    )
    return int(getattr(claimed, "rowcount", 0)) == 1


def _locked_out(
    request: Request,
    templates: TemplatesDep,
    t: Translator,
    tz: TimezoneDep,
    user: StaffUser,
    until: datetime,
    next_url: str,
) -> HTMLResponse:
    """Back to the sign-in form with the lock's end time; the pending cookie is dropped."""
    response = _login_page(
        request,
        templates,
        t,
        next_url=next_url,
        username=user.username,
        error=_locked_message(t, tz, until),
        status_code=status.HTTP_423_LOCKED,
    )
    clear_session_cookie(response)
    return response


@router.get("/account/totp", name="account_totp")
def account_totp_page(
    request: Request,
    pending: PendingDep,
    session: SessionDep,
    t: TranslatorDep,
    templates: TemplatesDep,
    next: str | None = None,
) -> Response:
    """Enrolment: a secret for the authenticator app, as a QR code and as text."""
    next_url = _safe_next(next)
    user = pending.user
    if user.totp_enabled:
        return _redirect(
            next_url if pending.web.mfa_passed else _with_next("/login/totp", next_url)
        )
    if not user.totp_secret:
        # Kept until confirmed, so a reload does not invalidate what the phone already scanned.
        user.totp_secret = totp.new_secret()
        session.commit()
    return _enrol_page(request, templates, t, user, next_url=next_url, error=None)


def _enrol_page(
    request: Request,
    templates: TemplatesDep,
    t: Translator,
    user: StaffUser,
    *,
    next_url: str,
    error: str | None,
    status_code: int = status.HTTP_200_OK,
) -> HTMLResponse:
    assert user.totp_secret is not None
    uri = totp.provisioning_uri(user.totp_secret, user.username)
    return render(
        templates,
        request,
        "totp_enrol.html",
        t,
        {
            "next": next_url,
            "error": error,
            "qr_svg": Markup(totp.qr_svg(uri, label=t("auth.enrol_qr_label"))),
            "secret": " ".join(
                user.totp_secret[i : i + 4] for i in range(0, len(user.totp_secret), 4)
            ),
            "recovery_codes": None,
        },
        status_code=status_code,
    )


@router.post("/account/totp", name="account_totp_submit")
def account_totp_submit(
    request: Request,
    pending: PendingCsrfDep,
    session: SessionDep,
    clock: ClockDep,
    settings: SettingsDep,
    t: TranslatorDep,
    templates: TemplatesDep,
    code: Annotated[str, Form(max_length=CODE_MAX_CHARS)] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    """Confirm the enrolment with a code; show the recovery codes, once."""
    now = clock.now()
    next_url = _safe_next(next)
    user = pending.user
    if user.totp_enabled:
        return _redirect(
            next_url if pending.web.mfa_passed else _with_next("/login/totp", next_url)
        )
    if not user.totp_secret:
        return _redirect(_with_next("/account/totp", next_url))
    if not _claim_totp_code(session, user, code, now=now):
        return _enrol_page(
            request,
            templates,
            t,
            user,
            next_url=next_url,
            error=t("auth.totp_wrong"),
            status_code=status.HTTP_400_BAD_REQUEST,
        )

    codes = recovery.new_codes()
    user.totp_enabled = True
    user.recovery_codes = recovery.hash_codes(codes)
    audit(session, request=request, user=user, action="totp_enrolled", now=now)
    token: str | None = None
    ttl_s = 0
    if not pending.web.mfa_passed:
        token, ttl_s = _complete(
            session,
            request,
            user,
            now=now,
            settings=settings,
            method="totp_enrolled",
            pending=pending.web,
        )
    else:
        request.state.user = user
    session.commit()
    response = render(
        templates,
        request,
        "totp_enrol.html",
        t,
        {"next": next_url, "error": None, "recovery_codes": codes},
    )
    if token is not None:
        set_session_cookie(response, token, secure=settings.security.secure_cookies, max_age=ttl_s)
    return response


@router.post("/logout", name="logout")
def logout(
    request: Request, pending: PendingCsrfDep, session: SessionDep, clock: ClockDep
) -> Response:
    """Sign out: the session is revoked (its cookie stops working) and the cookie cleared."""
    now = clock.now()
    pending.web.revoked_at = now
    audit(session, request=request, user=pending.user, action="logout", now=now)
    session.commit()
    response = _redirect("/login")
    clear_session_cookie(response)
    return response
