"""An installer pairs a discovered device and walk-tests the home, in headless Chromium.

The real hub (real Mosquitto, real database, ingest and rules) on a fake clock serves the portal
(``PortalHarness``). Ivar signs in with password and TOTP on his phone; a button the hub does not
know publishes over MQTT and shows up under *discovered devices*; he pairs it from the list into
Kari's living room, starts a walk test, and as the simulated devices publish what the checklist
asks for, the items tick off in the open page by themselves. He finishes the test and the record
says who tested what. The home was in test mode: not one SMS went out for the fall.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pyotp
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright
from sqlalchemy import select

from hub.broker import MosquittoProcess
from hub.storage.models import (
    DeviceHistoryEntry,
    DeviceType,
    DiscoveredDevice,
    StaffRole,
    WalkTest,
)
from simulators.devices import DevicePublisher, VirtualDevice
from tests.e2e.escalation_harness import HOME
from tests.e2e.test_portal_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS
from tests.e2e.test_portal_flows import (
    AFTERNOON,
    DESKTOP,
    PHONE,
    STEP_TIMEOUT_MS,
    PortalHarness,
    no_sideways_scroll,
    sign_in_with_form,
)
from tests.mqtt_helpers import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.broker]

NEW_BUTTON = "BTN-0042"
# The checklist polls every 2 s; allow a few polls on a busy machine.
TICK_TIMEOUT_MS = 12_000


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
def harness(mosquitto: MosquittoProcess, db_url: str) -> Iterator[PortalHarness]:
    h = PortalHarness(mosquitto, db_url, AFTERNOON, relatives=False)
    try:
        yield h
    finally:
        h.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context(viewport=PHONE, locale="nb-NO")
    context.set_default_timeout(STEP_TIMEOUT_MS)
    context.set_default_navigation_timeout(STEP_TIMEOUT_MS)
    try:
        yield context
    finally:
        context.close()


def _discovered(h: PortalHarness) -> bool:
    with h.runtime.session_factory() as s:
        return (
            s.scalar(select(DiscoveredDevice.id).where(DiscoveredDevice.identifier == NEW_BUTTON))
            is not None
        )


def _done(page: Page, device_id: str, item: str) -> None:
    expect(page.locator(f"#item-{device_id}-{item}")).to_have_attribute(
        "data-done", "true", timeout=TICK_TIMEOUT_MS
    )


def test_an_installer_pairs_a_discovered_button_and_walk_tests_the_home(
    harness: PortalHarness, context: BrowserContext, mosquitto: MosquittoProcess
) -> None:
    h = harness
    secret = pyotp.random_base32()
    h.set_password("ivar", totp_secret=secret, role=StaffRole.INSTALLER)
    page = context.new_page()
    sign_in_with_form(page, h.url, "ivar", totp_secret=secret, at=h.clock.now())

    # A new alarm button, switched on in Kari's home before anyone registered it.
    new_button = VirtualDevice(NEW_BUTTON, HOME, DeviceType.ALARM_BUTTON, clock=h.clock)
    kari = {
        device_id: VirtualDevice(device_id, HOME, device_type, clock=h.clock)
        for device_id, device_type in (
            ("fall", DeviceType.FALL_SENSOR),
            ("door", DeviceType.DOOR_CONTACT),
            ("button", DeviceType.ALARM_BUTTON),
        )
    }
    with DevicePublisher(
        [new_button, *kari.values()],
        host=mosquitto.host,
        port=mosquitto.port,
        will=False,
        announce_online=False,
    ) as home:
        home.publish(new_button.button(action="press"))
        wait_until(lambda: _discovered(h), timeout=10)

        # The discovered list, one click into a filled-in pair form.
        page.get_by_role("link", name="Enheter").click()
        expect(page).to_have_url(h.url + "/installer")
        row = page.locator(f'#discovered tr[data-identifier="{NEW_BUTTON}"]')
        expect(row).to_contain_text(HOME)
        no_sideways_scroll(page)
        page.screenshot(path=ARTIFACTS / "installer-discovered-375x800.png", full_page=True)
        row.get_by_role("link", name=f"Par {NEW_BUTTON}").click()
        expect(page.get_by_label("Hjem", exact=True)).to_have_value(HOME)
        expect(page.get_by_label("Enhetstype")).to_have_value("alarm_button")
        page.get_by_label("Rom", exact=True).fill("Stue")
        page.get_by_label("Romtype").select_option("living")
        page.get_by_role("button", name="Par enheten").click()

        expect(page.get_by_test_id("result-title")).to_have_text(f"{NEW_BUTTON} er paret")
        expect(page.get_by_test_id("mqtt-username")).to_have_text(NEW_BUTTON)
        expect(page.get_by_test_id("mqtt-password")).not_to_be_empty()
        # The test broker runs without per-device logins: the page says the sync is not done.
        expect(page.locator("#broker-sync")).to_have_attribute("data-sync", "not_configured")
        no_sideways_scroll(page)
        page.screenshot(path=ARTIFACTS / "installer-paired-375x800.png", full_page=True)

        # The walk test: the whole home goes into test mode.
        page.get_by_role("link", name=f"Tilbake til hjem {HOME}").click()
        expect(page.locator(f"#installer-device-{NEW_BUTTON}")).to_contain_text("Stue")
        no_sideways_scroll(page)
        page.screenshot(path=ARTIFACTS / "installer-home-375x800.png", full_page=True)
        page.get_by_role("button", name="Start en gangtest").click()
        expect(page).to_have_url(f"{h.url}/installer/walk-tests/1")
        for device_id in (NEW_BUTTON, *kari):
            expect(page.locator(f"#walk-device-{device_id}")).to_have_attribute(
                "data-complete", "false"
            )
        page.evaluate("window.__carehubProbe = 'still here'")

        # The installer makes each device show what the list asks for.
        h.clock.advance(timedelta(seconds=5))
        home.publish(new_button.button(action="press"))
        _done(page, NEW_BUTTON, "press")
        expect(page.locator(f"#item-{NEW_BUTTON}-press")).to_contain_text("Trykk på alarmknappen")
        expect(page.locator("#item-door-open")).to_have_attribute("data-done", "false")
        page.screenshot(path=ARTIFACTS / "installer-walk-test-375x800.png", full_page=True)
        h.clock.advance(timedelta(seconds=20))
        home.publish(kari["button"].button(action="press"))
        home.publish(kari["door"].door(open=True))
        home.publish(kari["door"].door(open=False))
        home.publish(kari["fall"].fall(confidence=0.95))
        for device_id, item in (("button", "press"), ("door", "open"), ("door", "close")):
            _done(page, device_id, item)
        _done(page, "fall", "fall")
        expect(page.locator("#walk-checklist")).to_have_attribute("data-complete", "true")
        assert page.evaluate("window.__carehubProbe") == "still here", "the page was reloaded"
        expect(page.locator("#stale-banner")).to_be_hidden()
        no_sideways_scroll(page)
        page.screenshot(path=ARTIFACTS / "installer-walk-test-done-375x800.png", full_page=True)
        page.set_viewport_size(DESKTOP)
        no_sideways_scroll(page)
        page.screenshot(path=ARTIFACTS / "installer-walk-test-done-1280x800.png", full_page=True)

    h.clock.advance(timedelta(minutes=1))
    page.get_by_role("button", name="Avslutt gangtesten").click()
    record = page.get_by_test_id("walk-record")
    expect(record).to_contain_text("Testet av ivar")
    expect(record).to_contain_text("Alle enhetene besto.")
    expect(page.locator("#walk-finish")).to_have_count(0)
    page.screenshot(path=ARTIFACTS / "installer-walk-test-record-1280x800.png", full_page=True)

    with h.runtime.session_factory() as s:
        walk = s.scalars(select(WalkTest)).one()
        assert (walk.started_by, walk.finished_by) == ("ivar", "ivar")
        assert walk.results is not None and walk.results["complete"] is True
        assert set(walk.results["devices"]) == {NEW_BUTTON, "fall", "door", "button"}
        history = s.scalars(
            select(DeviceHistoryEntry.action)
            .where(DeviceHistoryEntry.device_id == NEW_BUTTON, DeviceHistoryEntry.actor == "ivar")
            .order_by(DeviceHistoryEntry.id)
        ).all()
    assert list(history) == ["paired", "test_mode", "walk_test", "test_mode"]
    # The fall and the presses came in test mode: nobody was called out.
    h.expect_nothing_more()
