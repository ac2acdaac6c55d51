"""The portal's main stories in headless Chromium against the running hub.

Real Mosquitto, real database, the hub on a fake clock with the portal served by
``HubRuntime.serve_portal`` on a loopback port (``EscalationHarness``). A nurse signs in with
password and TOTP, a fall published over MQTT reaches her board by itself, she takes it, registers
on-site and resolves it, and the alarm's timeline shows each step; a coordinator adds a shift and
"on duty now" changes; an installer is refused the alarm board and a resident's profile.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pyotp
import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    Route,
    ViewportSize,
    expect,
    sync_playwright,
)
from sqlalchemy import select

from hub.broker import MosquittoProcess
from hub.passwords import hash_password
from hub.runtime import HubRuntime
from hub.storage.models import Resident, StaffRole, StaffUser, Zone
from tests.e2e.escalation_harness import NINA, OSLO, EscalationHarness
from tests.e2e.test_portal_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS

pytestmark = [pytest.mark.browser, pytest.mark.broker]

# A Monday afternoon in Oslo (the weekday matters for the roster story).
AFTERNOON = datetime(2026, 1, 5, 14, 32, tzinfo=OSLO)
PASSWORD = "correct horse battery staple"
# SSE should bring a new alarm at once; the board also polls every 10 s as a fallback.
LIVE_TIMEOUT_MS = 15_000
STEP_TIMEOUT_MS = 10_000
PHONE: ViewportSize = {"width": 375, "height": 800}
DESKTOP: ViewportSize = {"width": 1280, "height": 800}


class PortalHarness(EscalationHarness):
    """``EscalationHarness`` with a choice of whether staff must use TOTP."""

    def __init__(self, *args: Any, require_totp: bool = True, **kwargs: Any) -> None:
        self._require_totp = require_totp
        super().__init__(*args, **kwargs)

    def _new_runtime(self) -> HubRuntime:
        security = self.settings.security.model_copy(update={"require_totp": self._require_totp})
        self.settings = self.settings.model_copy(update={"security": security})
        return super()._new_runtime()

    def set_password(
        self, username: str, *, totp_secret: str | None = None, role: StaffRole | None = None
    ) -> None:
        """Give a seeded (or new) staff user a real password, and TOTP if ``totp_secret``."""
        now = self.clock.now()
        with self.runtime.session_factory() as s, s.begin():
            user = s.scalar(select(StaffUser).where(StaffUser.username == username))
            if user is None:
                assert role is not None, f"no user {username!r} to update"
                zone = s.scalars(select(Zone)).first()
                user = StaffUser(
                    username=username,
                    display_name=username.title(),
                    role=role,
                    password_hash="x",
                    zone_id=zone.id if zone else None,
                    active=True,
                    created_at=now,
                )
                s.add(user)
            user.password_hash = hash_password(PASSWORD)
            user.totp_secret = totp_secret
            user.totp_enabled = totp_secret is not None

    def resident_id(self) -> int:
        with self.runtime.session_factory() as s:
            resident_id = s.scalars(select(Resident.id)).first()
        assert resident_id is not None
        return resident_id

    def zone_id(self) -> int:
        with self.runtime.session_factory() as s:
            zone_id = s.scalars(select(Zone.id)).first()
        assert zone_id is not None
        return zone_id

    def user_id(self, username: str) -> int:
        with self.runtime.session_factory() as s:
            user_id = s.scalar(select(StaffUser.id).where(StaffUser.username == username))
        assert user_id is not None
        return user_id

    @property
    def url(self) -> str:
        return self.settings.portal.public_base_url


Make = Callable[..., PortalHarness]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `apt-get install -y chromium`", pytrace=False)
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def harness(mosquitto: MosquittoProcess, db_url: str) -> Iterator[Make]:
    made: list[PortalHarness] = []

    def make(**kwargs: Any) -> PortalHarness:
        h = PortalHarness(mosquitto, db_url, AFTERNOON, relatives=False, **kwargs)
        made.append(h)
        return h

    yield make
    errors = []
    for h in made:
        try:
            h.close()
        except AssertionError as exc:
            errors.append(str(exc))
    assert not errors, errors


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context(viewport=PHONE, locale="nb-NO")
    context.set_default_timeout(STEP_TIMEOUT_MS)
    context.set_default_navigation_timeout(STEP_TIMEOUT_MS)
    try:
        yield context
    finally:
        context.close()


def sign_in_with_form(
    page: Page, url: str, username: str, *, totp_secret: str | None = None, at: datetime
) -> None:
    """Sign in through the login form: password, then the TOTP code valid ``at`` (hub time)."""
    page.goto(url + "/login")
    page.get_by_label("Brukernavn").fill(username)
    page.get_by_label("Passord").fill(PASSWORD)
    page.get_by_role("button", name="Logg inn").click()
    if totp_secret is not None:
        code = page.get_by_label("Engangskode")
        expect(code).to_be_visible()
        code.fill(pyotp.TOTP(totp_secret).at(at))
        page.get_by_role("button", name="Bekreft").click()
    expect(page).to_have_url(url + "/")


def no_sideways_scroll(page: Page) -> None:
    overflow = page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    width = page.viewport_size["width"] if page.viewport_size else "?"
    assert overflow <= 0, f"{page.url} scrolls sideways by {overflow} px at {width} px"


def test_a_nurse_takes_a_fall_from_her_board_and_the_timeline_shows_each_step(
    harness: Make, context: BrowserContext
) -> None:
    h = harness()
    secret = pyotp.random_base32()
    h.set_password("nina", totp_secret=secret)
    page = context.new_page()

    sign_in_with_form(page, h.url, "nina", totp_secret=secret, at=h.clock.now())
    page.goto(h.url + "/board")
    expect(page.get_by_test_id("no-open-alarms")).to_be_visible()
    page.evaluate("window.__carehubProbe = 'still here'")  # a reload would lose it

    h.fall()  # over MQTT, through the hub's rules and escalation
    h.expect_sms(NINA, "Fall")  # step 1 of the policy: the nurse on duty
    alarm_id = h.alarm().id
    card = page.locator(f"#board-alarm-{alarm_id}")
    expect(card).to_be_visible(timeout=LIVE_TIMEOUT_MS)
    assert page.evaluate("window.__carehubProbe") == "still here", "the board was reloaded"
    expect(card).to_contain_text("Kari N.")
    expect(card.get_by_test_id("alarm-severity")).to_have_text("rød")
    no_sideways_scroll(page)
    page.screenshot(path=ARTIFACTS / "board-new-fall-375x800.png", full_page=True)

    card.get_by_test_id("take").click()
    expect(card.get_by_test_id("alarm-status")).to_have_text("kvittert")
    expect(card.get_by_test_id("alarm-taken-by")).to_have_text("Nina Sykepleier")
    expect(card.get_by_test_id("take")).to_have_count(0)
    h.expect_sms(NINA, "tatt")  # her confirmation: the alarm is hers

    card.get_by_test_id("on-site").click()
    expect(card.get_by_test_id("alarm-status")).to_have_text("på stedet")
    expect(card.get_by_test_id("on-site")).to_have_count(0)

    card.get_by_text("Avslutt …").click()
    card.get_by_label("Utfall").select_option("helped")
    card.get_by_label("Notat").fill("Hjalp henne opp, ingen skade.")
    page.screenshot(path=ARTIFACTS / "board-resolve-375x800.png", full_page=True)
    card.get_by_test_id("resolve").click()
    expect(card).to_have_count(0)
    expect(page.get_by_test_id("no-open-alarms")).to_be_visible()

    page.goto(f"{h.url}/alarms/{alarm_id}")
    expect(page.get_by_test_id("alarm-status")).to_have_text("avsluttet")
    timeline = page.get_by_test_id("timeline")
    transitions = timeline.locator("li[data-kind=transition]")
    taken = transitions.filter(has_text="→ kvittert")
    expect(taken).to_have_count(1)
    expect(taken.locator(".timeline__actor")).to_have_text("Nina Sykepleier")
    on_site = transitions.filter(has_text="→ på stedet")
    expect(on_site).to_have_count(1)
    expect(on_site.locator(".timeline__actor")).to_have_text("Nina Sykepleier")
    resolved = transitions.filter(has_text="→ avsluttet")
    expect(resolved).to_have_count(1)
    expect(resolved.locator(".timeline__actor")).to_have_text("Nina Sykepleier")
    expect(resolved).to_contain_text("Hjulpet")
    expect(resolved).to_contain_text("Hjalp henne opp, ingen skade.")
    expect(timeline.locator("li[data-kind=notification]").first).to_be_visible()
    notifications = page.get_by_test_id("notifications")
    alarm_sms = (
        notifications.get_by_role("row").filter(has_text="trinn 1, runde 1").filter(has_text="SMS")
    )
    expect(alarm_sms).to_contain_text("Nina Sykepleier")
    expect(alarm_sms).to_contain_text("levert")  # the simulator's delivery receipt
    no_sideways_scroll(page)
    page.screenshot(path=ARTIFACTS / "alarm-timeline-375x800.png", full_page=True)

    page.set_viewport_size(DESKTOP)
    no_sideways_scroll(page)
    page.screenshot(path=ARTIFACTS / "alarm-timeline-1280x800.png", full_page=True)
    page.goto(h.url + "/board")
    expect(page.get_by_test_id("no-open-alarms")).to_be_visible()
    page.screenshot(path=ARTIFACTS / "board-1280x800.png", full_page=True)
    h.expect_nothing_more()


def test_a_refresh_already_under_way_does_not_close_the_resolve_form_she_opened(
    harness: Make, context: BrowserContext
) -> None:
    """The board refreshes itself on every alarm event and every 10 s, but not while a nurse has
    "Avslutt …" open. A refresh already on its way when she opened it must not be swapped in
    either: it closed her form once, between her on-site click and her choice of outcome."""
    h = harness(require_totp=False)
    h.set_password("nina")
    page = context.new_page()
    sign_in_with_form(page, h.url, "nina", at=h.clock.now())
    page.goto(h.url + "/board")
    h.fall()
    h.expect_sms(NINA, "Fall")
    card = page.locator(f"#board-alarm-{h.alarm().id}")
    expect(card).to_be_visible(timeout=LIVE_TIMEOUT_MS)

    held: list[Route] = []

    def hold(route: Route) -> None:
        held.append(route)

    page.route("**/partials/board*", hold)
    page.evaluate(
        """() => {
            window.__boardAnswered = false;
            document.addEventListener('htmx:afterRequest', (e) => {
                if (e.detail.elt.id === 'board') { window.__boardAnswered = true; }
            });
            htmx.trigger('#board', 'sse:alarms');  // as the hub's next alarm event would
        }"""
    )
    deadline = time.monotonic() + STEP_TIMEOUT_MS / 1000
    while not held:
        assert time.monotonic() < deadline, "the board did not ask for a refresh"
        page.wait_for_timeout(20)

    card.get_by_text("Avslutt …").click()
    resolve = card.locator("details.resolve")
    expect(resolve).to_have_attribute("open", "")
    resolve.evaluate("element => { element.dataset.probe = 'hers'; }")
    held[0].continue_()  # the refresh's answer arrives now, with her form open
    page.wait_for_function("window.__boardAnswered === true")
    expect(resolve).to_have_attribute("data-probe", "hers")  # the same form, still open
    expect(resolve).to_have_attribute("open", "")
    page.unroute("**/partials/board*")
    outcome = card.get_by_label("Utfall")
    outcome.select_option(index=1)  # her form still works: the first outcome offered
    expect(outcome).not_to_have_value("")


def test_a_coordinator_adds_a_shift_and_on_duty_now_changes(
    harness: Make, context: BrowserContext
) -> None:
    h = harness(require_totp=False)
    h.set_password("kristin")
    zone_id = h.zone_id()
    page = context.new_page()

    sign_in_with_form(page, h.url, "kristin", at=h.clock.now())
    page.goto(h.url + "/roster")
    on_duty = page.get_by_test_id(f"on-duty-{zone_id}")
    expect(on_duty).to_have_text("Nina Sykepleier")

    zone = page.locator(f"#zone-{zone_id}")
    zone.get_by_text("Legg til fast vakt").first.click()  # the <summary> opens the form
    form = zone.locator("form", has=page.get_by_role("button", name="Legg til fast vakt"))
    form.get_by_label("Ansatt").select_option(label="Ola Sykepleier")
    form.get_by_label("Ukedag").select_option(str(h.clock.now().weekday()))
    form.get_by_label("Vaktnavn").fill("dag")
    now_local = h.clock.now().astimezone(OSLO)
    form.get_by_label("Start").fill((now_local - timedelta(hours=1)).strftime("%H:%M"))
    form.get_by_label("Slutt").fill((now_local + timedelta(hours=2)).strftime("%H:%M"))
    page.screenshot(path=ARTIFACTS / "roster-add-shift-375x800.png", full_page=True)
    form.get_by_role("button", name="Legg til fast vakt").click()

    expect(page).to_have_url(h.url + "/roster?saved=pattern")
    expect(page.get_by_role("status")).to_contain_text("Vaktplanen er oppdatert.")
    on_duty = page.get_by_test_id(f"on-duty-{zone_id}")
    expect(on_duty).to_contain_text("Ola Sykepleier")
    expect(on_duty).to_contain_text("Nina Sykepleier")
    no_sideways_scroll(page)
    page.screenshot(path=ARTIFACTS / "roster-on-duty-375x800.png", full_page=True)
    page.set_viewport_size(DESKTOP)
    page.screenshot(path=ARTIFACTS / "roster-on-duty-1280x800.png", full_page=True)
    h.expect_nothing_more()


def test_an_installer_is_refused_a_residents_alarm_history(
    harness: Make, context: BrowserContext
) -> None:
    h = harness(require_totp=False)
    h.set_password("ivar", role=StaffRole.INSTALLER)
    h.fall()  # there is an alarm to be refused
    h.expect_sms(NINA, "Fall")
    resident_id = h.resident_id()
    page = context.new_page()

    sign_in_with_form(page, h.url, "ivar", at=h.clock.now())
    # The overview shows homes and devices, but no open-alarms section.
    expect(page.locator("#overview")).to_be_visible()
    expect(page.locator("section.open-alarms")).to_have_count(0)
    expect(page.get_by_role("heading", name="Åpne alarmer")).to_have_count(0)
    expect(page.get_by_test_id("open-alarm-count")).to_have_count(0)
    page.screenshot(path=ARTIFACTS / "overview-installer-375x800.png", full_page=True)

    alarm_id = h.alarm().id
    for path in ("/board", f"/residents/{resident_id}", f"/alarms/{alarm_id}"):
        response = page.goto(h.url + path)
        assert response is not None
        assert response.status == 403, f"{path} answered {response.status} to an installer"
        body = page.locator("body")
        expect(body).not_to_contain_text("Kari N")
        expect(body).not_to_contain_text("Fall")
    h.expect_nothing_more()
