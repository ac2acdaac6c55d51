"""The overview page in headless Chromium: readable on a phone, and live without a reload."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pyotp
import pytest
import uvicorn
from playwright.sync_api import Browser, BrowserContext, expect, sync_playwright
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from care_portal.app import create_app
from care_portal.web_session import SESSION_COOKIE, create_session
from hub.clock import FakeClock
from hub.config import Settings
from hub.storage.db import make_engine, make_sessionmaker
from hub.storage.models import StaffRole, StaffUser
from tests.care_portal.conftest import staff_user
from tests.care_portal.seed import (
    BUTTON,
    DOOR_CONTACT,
    FALL_SENSOR,
    HOME,
    RESIDENT_LABEL,
    T0,
    add_event,
    seed_portal_data,
)

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
# The page polls every 5 s; allow two polls and some slack on a busy machine.
LIVE_UPDATE_TIMEOUT_MS = 12_000


@dataclass(frozen=True)
class RunningPortal:
    url: str
    engine: Engine
    database: Path
    session_factory: sessionmaker[Session]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's chromium (`apt-get install -y chromium`, "
            "which `make test` does) to run the browser tests.",
            pytrace=False,
        )
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        yield browser
        browser.close()


@pytest.fixture
def portal(sqlite_url: str) -> Iterator[RunningPortal]:
    """The portal served by uvicorn on a free port, in a thread, on a seeded SQLite file."""
    engine = make_engine(sqlite_url)
    factory = make_sessionmaker(engine)
    seed_portal_data(factory)
    app = create_app(Settings(), session_factory=factory, clock=FakeClock(T0))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(200):
            if server.started or not thread.is_alive():
                break
            time.sleep(0.05)
        assert server.started, "uvicorn did not start"
        yield RunningPortal(
            url=f"http://127.0.0.1:{port}",
            engine=engine,
            database=Path(make_url(sqlite_url).database or ""),
            session_factory=factory,
        )
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        engine.dispose()


def sign_in(context: BrowserContext, portal: RunningPortal) -> None:
    """Give the browser a nurse's session (both factors done), as if she had signed in."""
    user_id = staff_user(portal.session_factory, StaffRole.NURSE)
    with portal.session_factory() as session, session.begin():
        user = session.get(StaffUser, user_id)
        assert user is not None
        token, _ = create_session(session, user, now=T0, ttl_s=3600, mfa_passed=True)
    context.add_cookies([{"name": SESSION_COOKIE, "value": token, "url": portal.url}])


def test_a_nurse_signs_in_with_password_and_totp_on_a_phone(
    browser: Browser, portal: RunningPortal
) -> None:
    secret = pyotp.random_base32()
    user_id = staff_user(portal.session_factory, StaffRole.NURSE, "kari.nurse")
    with portal.session_factory() as session, session.begin():
        user = session.get(StaffUser, user_id)
        assert user is not None
        user.totp_secret, user.totp_enabled = secret, True
    context = browser.new_context(viewport={"width": 375, "height": 800}, locale="nb-NO")
    page = context.new_page()
    try:
        page.goto(portal.url + "/")
        expect(page).to_have_url(portal.url + "/login?next=%2F")
        page.get_by_label("Brukernavn").fill("kari.nurse")
        page.get_by_label("Passord").fill("pw")
        page.get_by_role("button", name="Logg inn").click()

        code = page.get_by_label("Engangskode")
        expect(code).to_have_attribute("autocomplete", "one-time-code")
        page.screenshot(path=ARTIFACTS / "login-totp-375x800.png", full_page=True)
        code.fill(pyotp.TOTP(secret).at(T0))
        page.get_by_role("button", name="Bekreft").click()

        expect(page).to_have_url(portal.url + "/")
        expect(page.get_by_test_id("signed-in-user")).to_have_text("Kari.Nurse")
        expect(page.locator(f"#home-{HOME}")).to_contain_text(RESIDENT_LABEL)
        page.get_by_role("button", name="Logg ut").click()
        expect(page).to_have_url(portal.url + "/login")
    finally:
        context.close()


@pytest.mark.parametrize(("width", "height"), [(375, 800), (1280, 800)], ids=["phone", "desktop"])
def test_overview_shows_the_home_and_a_new_event_arrives_by_itself(
    browser: Browser, portal: RunningPortal, width: int, height: int
) -> None:
    # A Norwegian phone or PC: its Accept-Language picks bokmål.
    context = browser.new_context(viewport={"width": width, "height": height}, locale="nb-NO")
    sign_in(context, portal)
    page = context.new_page()
    try:
        page.goto(portal.url + "/")

        expect(page.locator("html")).to_have_attribute("lang", "nb")
        expect(page.locator(f"#home-{HOME}")).to_contain_text(RESIDENT_LABEL)
        expect(page.locator(f"#device-{FALL_SENSOR}")).to_contain_text("87 %")
        expect(page.locator(f"#device-{DOOR_CONTACT}")).to_contain_text("frakoblet")
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"the page scrolls sideways by {overflow} px at {width} px"
        page.screenshot(path=ARTIFACTS / f"overview-{width}x{height}.png", full_page=True)

        # Mark this document: a reload would lose the mark.
        page.evaluate("window.__carehubProbe = 'still here'")
        probe = f"probe-{width}px"
        with portal.session_factory() as session, session.begin():
            add_event(
                session, BUTTON, "button", {"action": "press", "note": probe}, T0 + timedelta(0, 1)
            )

        first_event = page.locator("#events tbody tr").first
        expect(first_event).to_contain_text(probe, timeout=LIVE_UPDATE_TIMEOUT_MS)
        expect(first_event).to_contain_text(BUTTON)
        assert page.evaluate("window.__carehubProbe") == "still here", "the page was reloaded"
        expect(page.locator("#stale-banner")).to_be_hidden()
        page.screenshot(path=ARTIFACTS / f"overview-{width}x{height}-live.png", full_page=True)
    finally:
        context.close()


def test_the_page_says_so_when_it_can_no_longer_refresh(
    browser: Browser, portal: RunningPortal
) -> None:
    context = browser.new_context(viewport={"width": 375, "height": 800}, locale="nb-NO")
    sign_in(context, portal)
    page = context.new_page()
    try:
        page.goto(portal.url + "/")
        expect(page.locator(f"#device-{FALL_SENSOR}")).to_contain_text("87 %")
        expect(page.locator("#stale-banner")).to_be_hidden()

        portal.engine.dispose()
        for path in portal.database.parent.glob(portal.database.name + "*"):
            path.unlink()  # the database is gone: the next poll gets a 503

        banner = page.locator("#stale-banner")
        expect(banner).to_be_visible(timeout=LIVE_UPDATE_TIMEOUT_MS)
        expect(banner).to_contain_text("utdatert")
        expect(page.locator(f"#device-{FALL_SENSOR}")).to_contain_text("87 %")  # last known
        page.screenshot(path=ARTIFACTS / "overview-375x800-stale.png", full_page=False)
    finally:
        context.close()
