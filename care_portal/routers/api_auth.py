"""``POST /api/v1/auth/token``: the OAuth2 password flow that hands out bearer tokens."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Response, status
from fastapi.security import OAuth2PasswordRequestForm

from care_portal.auth import authenticate, issue_token
from care_portal.const import API_PREFIX
from care_portal.deps import ClockDep, SessionDep
from care_portal.schemas.auth import ErrorPublic, TokenPublic

logger = logging.getLogger(__name__)

router = APIRouter(prefix=f"{API_PREFIX}/auth", tags=["auth"])

# The same answer whatever was wrong: no hint whether the username exists.
LOGIN_FAILED = "Incorrect username or password."


@router.post(
    "/token",
    response_model=TokenPublic,
    responses={status.HTTP_401_UNAUTHORIZED: {"model": ErrorPublic}},
)
def login_for_token(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    session: SessionDep,
    clock: ClockDep,
    response: Response,
) -> TokenPublic:
    """Exchange a staff user's username and password for a bearer token (12 h by default)."""
    user = authenticate(session, form.username, form.password)
    if user is None:
        logger.info("API login refused")
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail=LOGIN_FAILED,
            headers={"WWW-Authenticate": "Bearer"},
        )
    issued = issue_token(session, user, now=clock.now())
    session.commit()
    logger.info("API token issued to %s", user.username)
    response.headers["Cache-Control"] = "no-store"
    return TokenPublic(access_token=issued.token, expires_in=issued.expires_in_s)
