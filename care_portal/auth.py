"""API authentication: staff passwords in, opaque bearer tokens out (only their SHA-256 stored)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

from sqlalchemy import select
from sqlalchemy.orm import Session

from care_portal.const import API_TOKEN_BYTES, API_TOKEN_TTL_S
from hub.passwords import hash_password, verify_password
from hub.storage.models import ApiToken, StaffUser


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A token handed to a client once; the database keeps only its hash."""

    token: str
    expires_at: datetime
    expires_in_s: int


def token_sha256(token: str) -> str:
    """The hex SHA-256 under which a token is stored and looked up."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@cache
def _decoy_hash() -> str:
    # Verifying against this when the user does not exist costs the same as a real check,
    # so the response time does not tell which usernames exist.
    return hash_password(secrets.token_urlsafe(16))


def authenticate(session: Session, username: str, password: str) -> StaffUser | None:
    """The active user with this username and password; ``None`` for any kind of failure."""
    user = None
    if "\x00" not in username:  # no username has one, and PostgreSQL refuses to compare it
        user = session.scalars(
            select(StaffUser).where(StaffUser.username == username)
        ).one_or_none()
    if user is None:
        verify_password(_decoy_hash(), password)
        return None
    if not verify_password(user.password_hash, password) or not user.active:
        return None
    return user


def issue_token(
    session: Session, user: StaffUser, *, now: datetime, ttl_s: int = API_TOKEN_TTL_S
) -> IssuedToken:
    """Create a bearer token for ``user`` valid ``ttl_s`` from ``now`` (the caller commits)."""
    token = secrets.token_urlsafe(API_TOKEN_BYTES)
    expires_at = now + timedelta(seconds=ttl_s)
    session.add(
        ApiToken(
            token_sha256=token_sha256(token),
            user_id=user.id,
            created_at=now,
            expires_at=expires_at,
            revoked_at=None,
        )
    )
    return IssuedToken(token=token, expires_at=expires_at, expires_in_s=ttl_s)


def user_for_token(session: Session, token: str, *, now: datetime) -> StaffUser | None:
    """The active user a token belongs to, unless it is unknown, expired or revoked."""
    row = session.execute(
        select(ApiToken, StaffUser)
        .join(StaffUser, ApiToken.user_id == StaffUser.id)
        .where(ApiToken.token_sha256 == token_sha256(token))
    ).one_or_none()
    if row is None:
        return None
    api_token, user = row
    if api_token.revoked_at is not None or api_token.expires_at <= now or not user.active:
        return None
    return user
