"""Portal test fixtures: a browser session for a user of a given role, without the login form."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from care_portal.web_session import SESSION_COOKIE, create_session
from hub.passwords import hash_password
from hub.storage.models import StaffRole, StaffUser, WebSession
from tests.care_portal.seed import T0

SignIn = Callable[[TestClient, StaffRole], StaffUser]


def staff_user(factory: sessionmaker[Session], role: StaffRole, username: str | None = None) -> int:
    """An active staff user of ``role`` (created once per username); returns its id."""
    name = username or f"test-{role.value}"
    with factory() as session, session.begin():
        user = session.scalar(select(StaffUser).where(StaffUser.username == name))
        if user is None:
            user = StaffUser(
                username=name,
                display_name=name.title(),
                role=role,
                password_hash=hash_password("pw"),
                phone=None,
                active=True,
                created_at=T0,
            )
            session.add(user)
            session.flush()
        return user.id


@pytest.fixture
def sign_in(session_factory: sessionmaker[Session]) -> SignIn:
    """Give ``client`` a signed-in session (both factors done) for a user of ``role``."""

    def do(client: TestClient, role: StaffRole) -> StaffUser:
        user_id = staff_user(session_factory, role)
        with session_factory() as session, session.begin():
            user = session.get(StaffUser, user_id)
            assert user is not None
            token, _row = create_session(session, user, now=T0, ttl_s=10**8, mfa_passed=True)
            session.expunge(user)
        client.cookies.set(SESSION_COOKIE, token)
        return user

    return do


def csrf_of(factory: sessionmaker[Session], client: TestClient) -> str:
    """The CSRF token of the client's session (what the page's forms carry)."""
    import hashlib

    token = client.cookies.get(SESSION_COOKIE)
    assert token
    digest = hashlib.sha256(token.encode()).hexdigest()
    with factory() as session:
        row = session.scalar(select(WebSession).where(WebSession.token_sha256 == digest))
        assert row is not None
        return row.csrf_token
