"""Every portal page in headless Chromium: axe finds no WCAG 2.0/2.1 A or AA violation at phone
and desktop width, nothing scrolls sideways at 375 px, and the board works from the keyboard."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta

import pyotp
import pytest
import uvicorn
from axe_playwright_python.sync_playwright import Axe
from fastapi.routing import APIRoute
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from care_portal.app import create_app
from care_portal.web_session import SESSION_COOKIE, create_session
from hub.clock import FakeClock
from hub.config import SecuritySettings, Settings
from hub.relative_links import make_relative_link
from hub.storage.db import make_engine, make_sessionmaker
from hub.storage.migrate import upgrade
from hub.storage.models import (
    Alarm,
    AlarmStatus,
    DiscoveredDevice,
    Relative,
    RelativeRole,
    StaffRole,
    StaffUser,
    WalkTest,
)
from tests.care_portal.api_seed import add_alarms, resident_ids
from tests.care_portal.conftest import staff_user
from tests.care_portal.seed import FALL_SENSOR, HOME, T0, seed_portal_data
from tests.e2e.test_portal_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.browser

LINK_SECRET = "a11y-test-link-secret"
PHONE_WIDTH = 375
WIDTHS = {"phone": (PHONE_WIDTH, 800), "desktop": (1280, 900)}
# The WCAG 2.0 and 2.1 success criteria of levels A and AA, as axe-core tags them.
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
AXE = Axe()


@dataclass(frozen=True)
class Portal:
    url: str
    factory: sessionmaker[Session]
    alarm_id: int
    resident_id: int
    relative_token: str
    discovered_id: int
    walk_id: int


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium", pytrace=False)
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        yield browser
        browser.close()


def serve(factory: sessionmaker[Session]) -> tuple[str, Callable[[], None]]:
    """The portal (TOTP required, relative links on) on a free port; returns (url, stop)."""
    settings = Settings(security=SecuritySettings(link_secret=LINK_SECRET))
    app = create_app(settings, session_factory=factory, clock=FakeClock(T0))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started or not thread.is_alive():
            break
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()

    return f"http://127.0.0.1:{port}", stop


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Portal]:
    """One seeded portal for the whole module: every page reads, none of them changes data
    (the keyboard test, which takes an alarm, uses a portal of its own)."""
    database = tmp_path_factory.mktemp("a11y") / "carehub.db"
    engine = make_engine(f"sqlite:///{database}")
    upgrade(f"sqlite:///{database}")
    factory = make_sessionmaker(engine)
    seed_portal_data(factory)
    alarms = add_alarms(factory)
    kari, _ola = resident_ids(factory)
    with factory() as session, session.begin():
        relative = Relative(
            resident_id=kari,
            name="Per Nordmann",
            phone="+47 912 34 567",
            priority=1,
            role=RelativeRole.ACTING,
            created_at=T0,
        )
        session.add(relative)
        session.flush()
        relative_id = relative.id
        discovered_id = session.scalars(select(DiscoveredDevice.id)).first()
        walk = WalkTest(
            home_id=HOME,
            started_by="test-installer",
            started_at=T0,
            test_mode_until=T0 + timedelta(minutes=30),
            results={},
        )
        session.add(walk)
        session.flush()
        walk_id = walk.id
    assert discovered_id is not None
    token = make_relative_link(alarms["fall"], relative_id, now=T0, ttl_s=3600, secret=LINK_SECRET)
    url, stop = serve(factory)
    try:
        yield Portal(url, factory, alarms["fall"], kari, token, discovered_id, walk_id)
    finally:
        stop()
        engine.dispose()


def signed_in(
    browser: Browser, portal: Portal, role: StaffRole, size: tuple[int, int]
) -> BrowserContext:
    """A browser context with a full session (both factors done) for a user of ``role``."""
    user_id = staff_user(portal.factory, role)
    with portal.factory() as session, session.begin():
        user = session.get(StaffUser, user_id)
        assert user is not None
        token, _ = create_session(session, user, now=T0, ttl_s=10**8, mfa_passed=True)
    context = browser.new_context(viewport={"width": size[0], "height": size[1]}, locale="nb-NO")
    context.add_cookies([{"name": SESSION_COOKIE, "value": token, "url": portal.url}])
    return context


def check_page(page: Page, name: str, width: int, height: int) -> None:
    """axe (WCAG 2.0/2.1 A and AA) finds nothing; at phone width nothing scrolls sideways."""
    page.wait_for_load_state("networkidle")
    page.screenshot(path=ARTIFACTS / f"a11y-{name}-{width}x{height}.png", full_page=True)
    results = AXE.run(page, options={"runOnly": {"type": "tag", "values": WCAG_TAGS}})
    assert results.violations_count == 0, f"{name} at {width} px:\n{results.generate_report()}"
    if width == PHONE_WIDTH:
        scroll_width = page.evaluate("document.documentElement.scrollWidth")
        assert scroll_width <= PHONE_WIDTH, f"{name} scrolls sideways: {scroll_width} px wide"


# (name, role or None for signed out, path given the portal)
SIGNED_IN_PAGES: list[tuple[str, StaffRole, Callable[[Portal], str]]] = [
    ("overview", StaffRole.ADMIN, lambda p: "/"),
    ("board", StaffRole.NURSE, lambda p: "/board"),
    ("alarm", StaffRole.NURSE, lambda p: f"/alarms/{p.alarm_id}"),
    ("residents", StaffRole.NURSE, lambda p: "/residents"),
    ("resident", StaffRole.COORDINATOR, lambda p: f"/residents/{p.resident_id}"),
    ("roster", StaffRole.COORDINATOR, lambda p: "/roster"),
    ("policies", StaffRole.COORDINATOR, lambda p: "/policies"),
    ("reports", StaffRole.COORDINATOR, lambda p: "/reports"),
    ("audit", StaffRole.ADMIN, lambda p: "/audit?username=test-nurse"),
    ("error", StaffRole.NURSE, lambda p: "/alarms/999999"),
    ("installer-homes", StaffRole.INSTALLER, lambda p: "/installer"),
    ("installer-home", StaffRole.INSTALLER, lambda p: f"/installer/homes/{HOME}"),
    ("installer-device", StaffRole.INSTALLER, lambda p: f"/installer/devices/{FALL_SENSOR}"),
    ("installer-pair", StaffRole.INSTALLER, lambda p: f"/installer/pair/{p.discovered_id}"),
    ("installer-walk", StaffRole.INSTALLER, lambda p: f"/installer/walk-tests/{p.walk_id}"),
]


@pytest.mark.parametrize("size", list(WIDTHS), ids=list(WIDTHS))
@pytest.mark.parametrize(
    ("name", "role", "path"), SIGNED_IN_PAGES, ids=[name for name, _r, _p in SIGNED_IN_PAGES]
)
def test_a_signed_in_page_passes_axe_and_fits_a_phone(
    browser: Browser,
    portal: Portal,
    name: str,
    role: StaffRole,
    path: Callable[[Portal], str],
    size: str,
) -> None:
    width, height = WIDTHS[size]
    context = signed_in(browser, portal, role, (width, height))
    page = context.new_page()
    try:
        response = page.goto(portal.url + path(portal))
        assert response is not None
        assert response.status == (404 if name == "error" else 200), name
        check_page(page, name, width, height)
    finally:
        context.close()


@pytest.mark.parametrize("size", list(WIDTHS), ids=list(WIDTHS))
def test_the_sign_in_pages_and_the_relative_s_page_pass_axe(
    browser: Browser, portal: Portal, size: str
) -> None:
    width, height = WIDTHS[size]
    enrolling = f"enrol-{size}"
    with_totp = f"totp-{size}"
    staff_user(portal.factory, StaffRole.NURSE, enrolling)
    secret = pyotp.random_base32()
    user_id = staff_user(portal.factory, StaffRole.NURSE, with_totp)
    with portal.factory() as session, session.begin():
        user = session.get_one(StaffUser, user_id)
        user.totp_secret, user.totp_enabled = secret, True
    context = browser.new_context(viewport={"width": width, "height": height}, locale="nb-NO")
    page = context.new_page()
    try:
        page.goto(portal.url + "/login")
        check_page(page, "login", width, height)
        # A wrong password: the form with its error must pass too.
        page.get_by_label("Brukernavn").fill(enrolling)
        page.get_by_label("Passord").fill("wrong")
        page.get_by_role("button", name="Logg inn").click()
        expect(page.locator("[role=alert]").first).to_be_visible()
        check_page(page, "login-error", width, height)

        page.get_by_label("Brukernavn").fill(enrolling)
        page.get_by_label("Passord").fill("pw")
        page.get_by_role("button", name="Logg inn").click()
        expect(page).to_have_url(portal.url + "/account/totp")
        check_page(page, "totp-enrol", width, height)

        context.clear_cookies()
        page.goto(portal.url + "/login")
        page.get_by_label("Brukernavn").fill(with_totp)
        page.get_by_label("Passord").fill("pw")
        page.get_by_role("button", name="Logg inn").click()
        expect(page).to_have_url(portal.url + "/login/totp")
        check_page(page, "totp-sign-in", width, height)

        context.clear_cookies()
        response = page.goto(portal.url + f"/r/{portal.relative_token}")
        assert response is not None and response.status == 200
        check_page(page, "relative", width, height)
    finally:
        context.close()


def test_the_board_works_from_the_keyboard(
    browser: Browser, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Tab from the top: the skip link first; past it, the first alarm's take button, and Enter
    takes the alarm (no mouse)."""
    database = tmp_path_factory.mktemp("a11y-keys") / "carehub.db"
    engine = make_engine(f"sqlite:///{database}")
    upgrade(f"sqlite:///{database}")
    factory = make_sessionmaker(engine)
    seed_portal_data(factory)
    alarms = add_alarms(factory)
    url, stop = serve(factory)
    portal = Portal(url, factory, alarms["fall"], 0, "", 0, 0)
    context = signed_in(browser, portal, StaffRole.NURSE, WIDTHS["phone"])
    page = context.new_page()
    try:
        page.goto(url + "/board")
        page.wait_for_load_state("networkidle")

        page.keyboard.press("Tab")
        skip = page.locator(":focus")
        expect(skip).to_have_attribute("href", "#main")
        expect(skip).to_be_visible()  # a skip link shows itself when focused
        page.keyboard.press("Enter")

        passed: list[str] = []
        for _ in range(6):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.dataset.testid") == "take":
                break
            passed.append(page.evaluate("document.activeElement.outerHTML.slice(0, 80)"))
        else:
            pytest.fail(f"Tab never reached a take button; it went through {passed}")
        card = page.locator(f"#board-alarm-{alarms['fall']}")
        expect(card.get_by_test_id("take")).to_be_focused()  # the red fall comes first
        page.screenshot(path=ARTIFACTS / "a11y-board-keyboard-focus.png", full_page=True)

        page.keyboard.press("Enter")

        expect(card.get_by_test_id("alarm-status")).to_have_text("kvittert", timeout=10_000)
        with factory() as session:
            alarm = session.get_one(Alarm, alarms["fall"])
            assert alarm.status is AlarmStatus.ACKNOWLEDGED
        page.screenshot(path=ARTIFACTS / "a11y-board-keyboard-taken.png", full_page=True)
    finally:
        context.close()
        stop()
        engine.dispose()


def test_every_page_of_the_portal_is_in_the_list() -> None:
    """A new GET page must join the axe check: every HTML GET route is covered above or named
    here as not a page (fragments, files, redirects, streams)."""
    app = create_app(Settings(), session_factory=make_sessionmaker(make_engine("sqlite://")))
    covered = {
        "/",
        "/board",
        "/alarms/{alarm_id}",
        "/residents",
        "/residents/{resident_id}",
        "/roster",
        "/policies",
        "/reports",
        "/audit",
        "/installer",
        "/installer/homes/{home_id}",
        "/installer/devices/{device_id}",
        "/installer/pair/{discovered_id}",
        "/installer/walk-tests/{walk_id}",
        "/login",
        "/account/totp",
        "/login/totp",
        "/r/{token}",
    }
    not_pages = {
        "/events",
        "/metrics",
        "/healthz",
        "/reports.csv",
        "/installer/walk-tests/{walk_id}/checklist",  # the walk page's live fragment
        "/residents/{resident_id}/access-report.csv",
    }
    routes = [
        route
        for entry in app.routes
        for route in getattr(getattr(entry, "original_router", None), "routes", [entry])
    ]
    pages = {
        route.path
        for route in routes
        if isinstance(route, APIRoute)
        and "GET" in route.methods
        and not route.path.startswith(("/api/", "/partials/", "/twilio/", "/static"))
    }
    assert "/board" in pages and "/login" in pages  # the walk finds the portal's routes
    missing = pages - covered - not_pages
    assert not missing, f"pages without an accessibility check: {sorted(missing)}"
