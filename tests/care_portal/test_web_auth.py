"""Staff sign-in in the browser: password, TOTP, recovery codes, enrolment, lockout and sign-out."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pyotp
import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from care_portal.app import create_app
from care_portal.security import lockout, recovery, totp
from care_portal.security.lockout import AddressLimiter, LockState
from care_portal.web_session import SESSION_COOKIE
from hub.cli import app as cli_app
from hub.clock import FakeClock
from hub.config import SecuritySettings, Settings
from hub.storage import crypto
from hub.storage.db import make_engine, make_sessionmaker
from hub.storage.migrate import upgrade
from hub.storage.models import AuditEntry, StaffRole, StaffUser, WebSession
from tests.care_portal.api_seed import PASSWORD, add_alarms, add_staff, resident_ids
from tests.care_portal.conftest import SignIn
from tests.care_portal.seed import T0, seed_portal_data
from tests.fixtures.databases import MakePgDatabase

MakeClient = Callable[..., TestClient]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def seeded(session_factory: sessionmaker[Session]) -> sessionmaker[Session]:
    """Kari's and Ola's homes, an open fall alarm, and staff of every role (and a retired one)."""
    seed_portal_data(session_factory)
    add_staff(session_factory)
    add_alarms(session_factory)
    return session_factory


@pytest.fixture
def make_client(seeded: sessionmaker[Session], clock: FakeClock) -> Iterator[MakeClient]:
    """A browser against the portal with the given security settings (over HTTPS)."""
    clients: list[TestClient] = []

    def make(**security: object) -> TestClient:
        settings = Settings(security=SecuritySettings.model_validate(security))
        client = TestClient(
            create_app(settings, session_factory=seeded, clock=clock),
            base_url="https://testserver",
            follow_redirects=False,
        )
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def sign_in_with_password(
    client: TestClient, username: str = "nurse", password: str = PASSWORD, next_url: str = "/"
) -> Response:
    return client.post(
        "/login", data={"username": username, "password": password, "next": next_url}
    )


def csrf_in(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the page has no form with a CSRF token"
    return match.group(1)


def set_cookie_header(response: Response) -> str:
    [cookie] = [
        value
        for name, value in response.headers.multi_items()
        if name == "set-cookie" and value.startswith(SESSION_COOKIE + "=")
    ]
    return cookie


def audit_actions(factory: sessionmaker[Session], username: str | None = None) -> list[str]:
    """The audit log's actions in order, leaving out the overview's reads."""
    with factory() as session:
        query = (
            select(AuditEntry.action)
            .where(AuditEntry.action != "overview.read")
            .order_by(AuditEntry.id)
        )
        if username is not None:
            query = query.where(AuditEntry.username == username)
        return list(session.scalars(query))


def give_totp(factory: sessionmaker[Session], username: str = "nurse") -> tuple[str, list[str]]:
    """Enrol ``username`` directly: returns the secret and the recovery codes."""
    secret = totp.new_secret()
    codes = recovery.new_codes()
    with factory() as session, session.begin():
        user = session.scalars(select(StaffUser).where(StaffUser.username == username)).one()
        user.totp_secret, user.totp_enabled = secret, True
        user.recovery_codes = recovery.hash_codes(codes)
    return secret, codes


def is_signed_in(client: TestClient) -> bool:
    response = client.get("/")
    assert response.status_code in (200, 303)
    return response.status_code == 200


# --- Pages need a session --------------------------------------------------------------------


def test_a_stranger_is_sent_to_the_sign_in_page(make_client: MakeClient) -> None:
    client = make_client()

    response = client.get("/")

    assert response.status_code == 303
    location = urlsplit(response.headers["location"])
    assert location.path == "/login"
    assert parse_qs(location.query) == {"next": ["/"]}
    page = client.get(response.headers["location"])
    assert page.status_code == 200
    assert 'autocomplete="current-password"' in page.text
    assert "Kari" not in page.text


def test_htmx_refresh_without_a_session_asks_htmx_to_redirect(make_client: MakeClient) -> None:
    response = make_client().get("/partials/overview", headers={"HX-Request": "true"})

    assert response.status_code == 204
    assert response.headers["HX-Redirect"] == "/login?next=%2Fpartials%2Foverview"


# --- Password only -----------------------------------------------------------------------------


@pytest.mark.parametrize("secure", [True, False], ids=["https", "local-demo"])
def test_password_alone_signs_in_when_no_second_factor_is_required(
    make_client: MakeClient, seeded: sessionmaker[Session], secure: bool
) -> None:
    client = make_client(require_totp=False, secure_cookies=secure)

    response = sign_in_with_password(client)

    assert response.status_code == 303
    assert response.headers["location"] == "/"
    cookie = set_cookie_header(response).lower()
    assert "httponly" in cookie
    assert "samesite=strict" in cookie
    assert ("; secure" in cookie) is secure
    page = client.get("/")
    assert page.status_code == 200
    assert 'data-testid="signed-in-user">Nurse<' in page.text
    assert 'action="/logout"' in page.text
    assert audit_actions(seeded, "nurse")[0] == "login"


def test_wrong_password_unknown_user_and_retired_account_look_the_same(
    make_client: MakeClient, seeded: sessionmaker[Session]
) -> None:
    client = make_client(require_totp=False)

    answers = [
        sign_in_with_password(client, "nurse", "wrong"),
        sign_in_with_password(client, "nobody", PASSWORD),
        sign_in_with_password(client, "retired", PASSWORD),
    ]

    for answer in answers:
        assert answer.status_code == 400
        assert "Feil brukernavn eller passord." in answer.text
        assert 'role="alert"' in answer.text
        assert SESSION_COOKIE not in answer.headers.get("set-cookie", "")
    assert not is_signed_in(client)
    assert audit_actions(seeded) == ["login_failed"] * 3


def test_sign_in_goes_back_to_the_page_asked_for_but_never_to_another_site(
    make_client: MakeClient,
) -> None:
    client = make_client(require_totp=False)
    assert sign_in_with_password(client, next_url="/partials/overview").headers["location"] == (
        "/partials/overview"
    )
    other = make_client(require_totp=False)
    assert sign_in_with_password(other, next_url="//evil.example/").headers["location"] == "/"


# --- TOTP --------------------------------------------------------------------------------------


def test_with_totp_the_password_alone_reaches_nothing_but_the_code_step(
    make_client: MakeClient, seeded: sessionmaker[Session], clock: FakeClock
) -> None:
    secret, _codes = give_totp(seeded)
    client = make_client(require_totp=False)  # the user turned it on: it is asked anyway

    response = sign_in_with_password(client)
    assert response.status_code == 303
    assert response.headers["location"] == "/login/totp"
    assert not is_signed_in(client)  # half signed in: the overview still says no
    page = client.get("/login/totp")
    assert 'autocomplete="one-time-code"' in page.text
    assert 'inputmode="numeric"' in page.text
    csrf = csrf_in(page.text)

    wrong = client.post("/login/totp", data={"code": "000000", "csrf_token": csrf})
    assert wrong.status_code == 400
    assert "Koden stemmer ikke" in wrong.text
    assert not is_signed_in(client)

    clock.advance(timedelta(seconds=45))
    code = pyotp.TOTP(secret).at(clock.now())
    right = client.post("/login/totp", data={"code": code, "csrf_token": csrf})
    assert right.status_code == 303
    assert right.headers["location"] == "/"
    assert is_signed_in(client)
    assert audit_actions(seeded, "nurse") == ["login_failed", "login"]
    with seeded() as session:
        sessions = session.scalars(select(WebSession).order_by(WebSession.id)).all()
        # The password-only session was replaced, not upgraded: a new cookie, a new CSRF token.
        assert [(s.mfa_passed, s.revoked_at is not None) for s in sessions] == [
            (False, True),
            (True, False),
        ]


def test_a_code_post_without_the_csrf_token_is_refused(
    make_client: MakeClient, seeded: sessionmaker[Session], clock: FakeClock
) -> None:
    secret, _codes = give_totp(seeded)
    client = make_client()
    sign_in_with_password(client)

    response = client.post("/login/totp", data={"code": pyotp.TOTP(secret).at(clock.now())})

    assert response.status_code == 403
    assert not is_signed_in(client)


def test_a_recovery_code_works_once(make_client: MakeClient, seeded: sessionmaker[Session]) -> None:
    _secret, codes = give_totp(seeded)
    client = make_client()
    sign_in_with_password(client)
    csrf = csrf_in(client.get("/login/totp").text)

    used = client.post("/login/totp", data={"recovery_code": codes[3].upper(), "csrf_token": csrf})

    assert used.status_code == 303
    assert is_signed_in(client)
    with seeded() as session:
        nurse = session.scalars(select(StaffUser).where(StaffUser.username == "nurse")).one()
        assert len(nurse.recovery_codes or []) == 9
    assert "recovery_code_used" in audit_actions(seeded, "nurse")

    again = make_client()
    sign_in_with_password(again)
    csrf = csrf_in(again.get("/login/totp").text)
    refused = again.post("/login/totp", data={"recovery_code": codes[3], "csrf_token": csrf})
    assert refused.status_code == 400
    assert "allerede brukt" in refused.text
    assert not is_signed_in(again)


def test_enrolment_shows_a_qr_code_then_the_recovery_codes_once(
    make_client: MakeClient, seeded: sessionmaker[Session], clock: FakeClock
) -> None:
    client = make_client()  # outside demo mode TOTP is required

    response = sign_in_with_password(client, "coordinator")
    assert response.headers["location"] == "/account/totp"
    assert not is_signed_in(client)
    page = client.get("/account/totp")
    assert page.status_code == 200
    assert re.search(r'<svg[^>]*class="qr"[^>]*role="img"', page.text)
    assert "<path" in page.text
    with seeded() as session:
        user = session.scalars(select(StaffUser).where(StaffUser.username == "coordinator")).one()
        secret = user.totp_secret
        assert secret is not None and not user.totp_enabled
    assert secret[:4] in page.text  # typed by hand when the camera will not scan
    assert client.get("/account/totp").text.count(secret[:4]) >= 1  # a reload keeps the secret
    csrf = csrf_in(page.text)

    wrong = client.post("/account/totp", data={"code": "123456", "csrf_token": csrf})
    assert wrong.status_code == 400
    assert 'role="alert"' in wrong.text
    done = client.post(
        "/account/totp", data={"code": pyotp.TOTP(secret).at(clock.now()), "csrf_token": csrf}
    )

    assert done.status_code == 200
    codes = re.findall(r"<li><code>([a-z0-9]{5}-[a-z0-9]{5})</code></li>", done.text)
    assert len(codes) == 10 and len(set(codes)) == 10
    assert is_signed_in(client)
    assert client.get("/account/totp").status_code == 303  # never shown again
    with seeded() as session:
        user = session.scalars(select(StaffUser).where(StaffUser.username == "coordinator")).one()
        assert user.totp_enabled
        assert user.recovery_codes is not None and len(user.recovery_codes) == 10
        assert not any(code in str(user.recovery_codes) for code in codes)  # only hashes
    assert audit_actions(seeded, "coordinator") == ["totp_enrolled", "login"]


def test_demo_mode_needs_no_second_factor(seeded: sessionmaker[Session], clock: FakeClock) -> None:
    settings = Settings(demo_mode=True)
    app = create_app(settings, session_factory=seeded, clock=clock)
    with TestClient(app, base_url="https://testserver", follow_redirects=False) as client:
        assert sign_in_with_password(client).headers["location"] == "/"
        assert is_signed_in(client)


def totp_code_step(client: TestClient, code: str) -> Response:
    """Sign ``client`` in as the nurse: her password, then ``code`` as the second factor."""
    sign_in_with_password(client)
    csrf = csrf_in(client.get("/login/totp").text)
    return client.post("/login/totp", data={"code": code, "csrf_token": csrf})


def test_a_totp_code_signs_in_once_even_inside_its_window(
    make_client: MakeClient, seeded: sessionmaker[Session], clock: FakeClock
) -> None:
    secret, _codes = give_totp(seeded)
    code = pyotp.TOTP(secret).at(clock.now())
    first = make_client()
    assert totp_code_step(first, code).status_code == 303
    assert is_signed_in(first)

    # Someone who saw the code (over a shoulder, in a proxy log) tries it 20 s later.
    clock.advance(timedelta(seconds=20))
    replay = make_client()
    refused = totp_code_step(replay, code)

    assert refused.status_code == 400
    assert "Koden stemmer ikke" in refused.text
    assert not is_signed_in(replay)
    assert audit_actions(seeded, "nurse") == ["login", "login_failed"]
    with seeded() as session:
        nurse = session.scalars(select(StaffUser).where(StaffUser.username == "nurse")).one()
        assert nurse.failed_logins == 1  # a replay counts toward the lockout
        assert nurse.totp_last_step == totp.time_step(clock.now() - timedelta(seconds=20))

    # The next step's code works; after it, the still-valid code of the step before does not.
    clock.advance(timedelta(seconds=30))
    later = make_client()
    assert totp_code_step(later, pyotp.TOTP(secret).at(clock.now())).status_code == 303
    earlier = pyotp.TOTP(secret).at(clock.now() - timedelta(seconds=30))
    assert totp.verify(secret, earlier, now=clock.now())  # inside the ± one step window
    assert totp_code_step(make_client(), earlier).status_code == 400


def test_the_enrolment_code_cannot_be_used_again_to_sign_in(
    make_client: MakeClient, seeded: sessionmaker[Session], clock: FakeClock
) -> None:
    client = make_client()
    sign_in_with_password(client, "coordinator")
    page = client.get("/account/totp")
    with seeded() as session:
        user = session.scalars(select(StaffUser).where(StaffUser.username == "coordinator")).one()
        secret = user.totp_secret
    assert secret is not None
    code = pyotp.TOTP(secret).at(clock.now())
    done = client.post("/account/totp", data={"code": code, "csrf_token": csrf_in(page.text)})
    assert done.status_code == 200 and is_signed_in(client)

    again = make_client()
    sign_in_with_password(again, "coordinator")
    csrf = csrf_in(again.get("/login/totp").text)
    replay = again.post("/login/totp", data={"code": code, "csrf_token": csrf})

    assert replay.status_code == 400
    assert not is_signed_in(again)


def test_the_totp_secret_and_the_display_name_are_stored_encrypted(
    seeded: sessionmaker[Session],
) -> None:
    saved = replace(crypto._state)
    crypto.configure_keys([crypto.generate_key()])
    try:
        secret, _codes = give_totp(seeded)  # written under the key
        with seeded() as session, session.begin():
            nurse = session.scalars(select(StaffUser).where(StaffUser.username == "nurse")).one()
            nurse.display_name = "Nina Sykepleier"
        with seeded() as session:
            stored_secret, stored_name = session.execute(
                text("SELECT totp_secret, display_name FROM staff_users WHERE username = 'nurse'")
            ).one()
            nurse = session.scalars(select(StaffUser).where(StaffUser.username == "nurse")).one()
            assert (nurse.totp_secret, nurse.display_name) == (secret, "Nina Sykepleier")
        assert stored_secret.startswith("v2:") and secret not in stored_secret
        assert stored_name.startswith("v2:") and "Nina" not in stored_name
    finally:
        crypto._state.ring = saved.ring
        crypto._state.configured = saved.configured
        crypto._state.warned = saved.warned


@pytest.fixture(
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
    ids=["sqlite", "postgres"],
)
def unmigrated_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database that was never migrated."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'before-0007.db'}"
    make_pg_database: MakePgDatabase = request.getfixturevalue("make_pg_database")
    return make_pg_database()


def test_a_secret_from_before_0007_still_signs_in_and_keys_rotate_encrypts_it(
    unmigrated_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Migration 0007 changes types only: a clear TOTP secret and name stay readable, and
    ``carehub keys rotate`` encrypts them (with the step memory starting empty)."""
    secret = totp.new_secret()
    upgrade(unmigrated_url, "0006")
    engine = make_engine(unmigrated_url)
    saved = replace(crypto._state)
    try:
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO staff_users (id, username, display_name, role, password_hash, "
                    "totp_secret, totp_enabled, language, active, failed_logins, created_at) "
                    "VALUES (1, 'nina', 'Nina Sykepleier', 'nurse', 'x', :s, true, 'nb', true, "
                    "0, :t)"
                ),
                {"s": secret, "t": T0},
            )
        upgrade(unmigrated_url)
        key = crypto.generate_key()
        crypto.configure_keys([key])
        factory = make_sessionmaker(engine)
        with factory() as session:
            nina = session.get_one(StaffUser, 1)
            assert (nina.display_name, nina.totp_secret, nina.totp_last_step) == (
                "Nina Sykepleier",
                secret,
                None,
            )

        monkeypatch.setenv("CAREHUB_DATABASE__URL", unmigrated_url)
        monkeypatch.setenv("CAREHUB_SECURITY__DATA_KEYS", json.dumps([key]))
        result = CliRunner().invoke(cli_app, ["keys", "rotate"])
        assert result.exit_code == 0, result.output

        with engine.connect() as connection:
            stored = connection.execute(
                text("SELECT display_name, totp_secret FROM staff_users WHERE id = 1")
            ).one()
        assert all(value.startswith("v2:") for value in stored)
        assert secret not in stored[1] and "Nina" not in stored[0]
        with factory() as session:
            nina = session.get_one(StaffUser, 1)
            assert (nina.display_name, nina.totp_secret) == ("Nina Sykepleier", secret)
    finally:
        crypto._state.ring = saved.ring
        crypto._state.configured = saved.configured
        crypto._state.warned = saved.warned
        engine.dispose()


# --- Lockout -----------------------------------------------------------------------------------


def test_five_wrong_passwords_lock_the_account_until_the_lockout_has_passed(
    make_client: MakeClient, seeded: sessionmaker[Session], clock: FakeClock
) -> None:
    client = make_client(require_totp=False, lockout_s=900)

    answers = [sign_in_with_password(client, password="guess") for _ in range(5)]

    assert [a.status_code for a in answers] == [400, 400, 400, 400, 423]
    # 12:00 UTC + 15 min is 13:15 in Oslo.
    assert "sperret til kl. 13:15:00" in answers[-1].text
    still = sign_in_with_password(client)  # the right password does not help now
    assert still.status_code == 423
    assert not is_signed_in(client)

    clock.advance(timedelta(seconds=900))
    assert sign_in_with_password(client).status_code == 303
    assert is_signed_in(client)
    assert audit_actions(seeded, "nurse") == ["login_failed"] * 5 + [
        "login_locked",
        "login_locked",
        "login",
    ]


def test_wrong_totp_codes_count_toward_the_lockout(
    make_client: MakeClient, seeded: sessionmaker[Session]
) -> None:
    give_totp(seeded)
    client = make_client(login_max_failures=3)
    sign_in_with_password(client)
    csrf = csrf_in(client.get("/login/totp").text)

    answers = [
        client.post("/login/totp", data={"code": "000000", "csrf_token": csrf}) for _ in range(3)
    ]

    assert [a.status_code for a in answers] == [400, 400, 423]
    assert "sperret" in answers[-1].text
    assert client.get("/login/totp").status_code == 303  # the half session is gone


def test_many_failures_from_one_address_are_slowed_down(make_client: MakeClient) -> None:
    client = make_client(require_totp=False)
    for number in range(lockout.IP_MAX_FAILURES):
        assert sign_in_with_password(client, f"guess{number}", "x").status_code == 400

    refused = sign_in_with_password(client)  # even the right password

    assert refused.status_code == 429
    assert not is_signed_in(client)


# --- CSRF and sign-out -------------------------------------------------------------------------


def test_sign_out_needs_the_csrf_token_and_then_the_old_cookie_is_dead(
    make_client: MakeClient, seeded: sessionmaker[Session]
) -> None:
    client = make_client(require_totp=False)
    sign_in_with_password(client)
    token = client.cookies.get(SESSION_COOKIE)
    assert token

    forged = client.post("/logout")
    assert forged.status_code == 403
    assert is_signed_in(client)  # nothing changed

    csrf = csrf_in(client.get("/").text)
    response = client.post("/logout", data={"csrf_token": csrf})
    assert response.status_code == 303
    assert response.headers["location"] == "/login"
    assert not is_signed_in(client)

    replay = make_client()
    replay.cookies.set(SESSION_COOKIE, token)
    assert replay.get("/").status_code == 303
    assert audit_actions(seeded, "nurse") == ["login", "logout"]


# --- Roles and the audit log on the overview ---------------------------------------------------


def test_an_installer_sees_homes_and_devices_but_no_alarms_or_events(
    make_client: MakeClient, sign_in: SignIn
) -> None:
    installer = make_client()
    sign_in(installer, StaffRole.INSTALLER)
    nurse = make_client()
    sign_in(nurse, StaffRole.NURSE)

    for path in ("/", "/partials/overview"):
        seen = installer.get(path).text
        assert 'id="home-h-1001"' in seen and 'id="device-fall-1001"' in seen
        assert "open-alarms" not in seen
        assert 'id="events"' not in seen and "events-title" not in seen
        assert "fall detected" not in seen
        assert "open-alarms" in nurse.get(path).text


def test_viewing_the_overview_is_audited_per_resident(
    make_client: MakeClient, seeded: sessionmaker[Session], sign_in: SignIn
) -> None:
    client = make_client()
    user = sign_in(client, StaffRole.NURSE)

    client.get("/")
    client.get("/partials/overview")  # the refresh shows the same residents: no new entries

    with seeded() as session:
        entries = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "overview.read")
        ).all()
    assert sorted(e.resident_id or 0 for e in entries) == sorted(resident_ids(seeded))
    assert {(e.user_id, e.username, e.role) for e in entries} == {(user.id, user.username, "nurse")}
    assert all(e.at == T0 and e.ip for e in entries)


# --- The pure parts ----------------------------------------------------------------------------


def test_lockout_counts_failures_and_a_lapsed_lock_starts_afresh() -> None:
    state = LockState(failed=0, locked_until=None)
    for _ in range(4):
        state = lockout.after_failure(state, T0, max_failures=5, lockout_s=60)
    assert not lockout.is_locked(state, T0)
    state = lockout.after_failure(state, T0, max_failures=5, lockout_s=60)
    assert lockout.is_locked(state, T0 + timedelta(seconds=59))
    assert not lockout.is_locked(state, T0 + timedelta(seconds=60))
    later = lockout.after_failure(state, T0 + timedelta(seconds=61), max_failures=5, lockout_s=60)
    assert later == LockState(failed=1, locked_until=None)


def test_address_limiter_forgets_failures_outside_its_window() -> None:
    limiter = AddressLimiter(max_failures=2, window_s=600)
    limiter.record_failure("10.0.0.1", T0)
    limiter.record_failure("10.0.0.1", T0 + timedelta(minutes=5))
    assert limiter.blocked("10.0.0.1", T0 + timedelta(minutes=6))
    assert not limiter.blocked("10.0.0.2", T0 + timedelta(minutes=6))
    assert not limiter.blocked("10.0.0.1", T0 + timedelta(minutes=10, seconds=1))


def test_totp_accepts_one_step_of_clock_drift_and_no_more() -> None:
    secret = totp.new_secret()
    code = pyotp.TOTP(secret).at(T0)
    assert totp.verify(secret, code, now=T0 + timedelta(seconds=30))
    assert not totp.verify(secret, code, now=T0 + timedelta(seconds=90))
    assert totp.verify(secret, f"{code[:3]} {code[3:]}", now=T0)
    uri = totp.provisioning_uri(secret, "kari")
    assert uri.startswith("otpauth://totp/CareHub:kari?") and "issuer=CareHub" in uri


def test_totp_steps_are_single_use_and_bound_to_the_newest_matching_step() -> None:
    secret = totp.new_secret()
    step = totp.time_step(T0)
    code = pyotp.TOTP(secret).at(T0)

    assert totp.accepted_step(secret, code, now=T0, last_step=None) == step
    assert totp.accepted_step(secret, code, now=T0, last_step=step - 1) == step
    assert totp.accepted_step(secret, code, now=T0, last_step=step) is None
    assert totp.accepted_step(secret, code, now=T0 + timedelta(seconds=30), last_step=step) is None
    following = pyotp.TOTP(secret).at(T0 + timedelta(seconds=30))
    assert totp.accepted_step(secret, following, now=T0, last_step=step) == step + 1
    assert totp.accepted_step(secret, "12345", now=T0, last_step=None) is None
