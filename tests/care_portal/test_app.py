"""The care portal against a real database: overview page, languages, health and metrics."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from datetime import timedelta
from html import unescape
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from care_portal.app import create_app
from care_portal.const import LANG_COOKIE
from care_portal.web_session import SESSION_COOKIE, create_session
from hub.clock import FakeClock
from hub.config import DatabaseSettings, PortalSettings, Settings
from hub.storage.db import make_engine, make_sessionmaker
from hub.storage.models import Base, StaffRole, StaffUser
from tests.care_portal.conftest import SignIn, staff_user
from tests.care_portal.seed import (
    BUTTON,
    DOOR_CONTACT,
    FALL_SENSOR,
    HOME,
    QUIET_HOME,
    REJECTED_TOPIC,
    RESIDENT_LABEL,
    RETIRED,
    T0,
    add_event,
    seed_portal_data,
)


@pytest.fixture
def settings() -> Settings:
    return Settings(timezone="Europe/Oslo")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def seeded(session_factory: sessionmaker[Session]) -> sessionmaker[Session]:
    """The shared database fixture (SQLite and PostgreSQL), with Kari's and Ola's homes."""
    seed_portal_data(session_factory)
    return session_factory


@pytest.fixture
def client(
    settings: Settings, seeded: sessionmaker[Session], clock: FakeClock, sign_in: SignIn
) -> Iterator[TestClient]:
    """A nurse's browser, signed in."""
    app = create_app(settings, session_factory=seeded, clock=clock)
    with TestClient(app) as client:
        sign_in(client, StaffRole.NURSE)
        yield client


def device_row(html: str, device_id: str) -> str:
    """The table row of one device on the page."""
    match = re.search(rf'<tr id="device-{re.escape(device_id)}".*?</tr>', html, re.DOTALL)
    assert match, f"device {device_id} is not on the page"
    return match.group(0)


def text_of(html: str) -> str:
    """The text a reader sees: tags removed, entities decoded, whitespace collapsed."""
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


def table_text(html: str, table_id: str) -> str:
    """The text of one table on the page ("" when it is not there)."""
    match = re.search(rf'<table[^>]*id="{table_id}"[^>]*>(.*?)</table>', html, re.DOTALL)
    return text_of(match.group(1)) if match else ""


def test_overview_lists_homes_devices_events_and_intake_in_bokmal(client: TestClient) -> None:
    response = client.get("/")

    assert response.status_code == 200
    html = response.text
    assert '<html lang="nb">' in html
    assert "Oversikt" in html
    assert HOME in html and QUIET_HOME in html
    assert "Ørje" in html and "Mysen" in html
    assert RESIDENT_LABEL in html
    fall = text_of(device_row(html, FALL_SENSOR))
    assert "Fallsensor" in fall and "CareHub MQTT" in fall and "Bad" in fall
    assert "tilkoblet" in fall and "87 %" in fall
    # Last seen at 11:55 UTC is shown in the municipality's time: 12:55 in Oslo.
    assert "05.01.2026 12:55:00" in fall
    door = text_of(device_row(html, DOOR_CONTACT))
    assert "frakoblet" in door and "Zigbee2MQTT" in door
    assert "12 % lavt" in door
    button = text_of(device_row(html, BUTTON))
    assert "ukjent" in button and "aldri" in button
    assert "til 05.01.2026 14:00:00" in button  # test mode until 13:00 UTC
    assert fall.endswith("12:55:00 av")  # not in test mode
    assert f"device-{RETIRED}" not in html
    events = table_text(html, "events")
    assert '"confidence": 0.93' in events
    assert events.count(DOOR_CONTACT) == 2
    assert re.search(r'data-testid="discovered-count">1<', html)
    assert re.search(r'data-testid="rejected-count">1<', html)
    assert REJECTED_TOPIC in html
    assert "Oppdatert 13:00:00" in html  # the time comes from the clock


def test_rejected_reason_is_escaped_not_executed(client: TestClient) -> None:
    html = client.get("/").text

    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_english_is_chosen_with_lang_and_remembered_in_a_cookie(client: TestClient) -> None:
    response = client.get("/", params={"lang": "en"})

    assert response.status_code == 200
    html = response.text
    assert '<html lang="en">' in html
    assert "Overview" in html and "Latest events" in html
    door = text_of(device_row(html, DOOR_CONTACT))
    assert "offline" in door and "12 % low" in door and "Door contact" in door
    assert "2026-01-05 12:55:00" in text_of(device_row(html, FALL_SENSOR))
    assert response.cookies.get(LANG_COOKIE) == "en"

    again = client.get("/")  # no ?lang: the cookie decides
    assert '<html lang="en">' in again.text
    partial = client.get("/partials/overview")
    assert "Latest events" in partial.text

    back = client.get("/", params={"lang": "nb"})
    assert '<html lang="nb">' in back.text
    assert '<html lang="nb">' in client.get("/").text


@pytest.mark.parametrize(
    ("accept_language", "expected"),
    [
        ("en-GB,en;q=0.9", "en"),
        ("de-DE, en;q=0.5", "en"),
        ("nn-NO,en;q=0.5", "nb"),
        ("en;q=0.4, nb;q=0.8", "nb"),
        ("fr-FR", "nb"),
    ],
)
def test_language_follows_accept_language_without_a_choice(
    client: TestClient, accept_language: str, expected: str
) -> None:
    response = client.get("/", headers={"Accept-Language": accept_language})

    assert f'<html lang="{expected}">' in response.text
    assert LANG_COOKIE not in response.cookies  # only an explicit choice is remembered


def test_unknown_lang_parameter_falls_back_to_the_configured_default(
    seeded: sessionmaker[Session], clock: FakeClock, sign_in: SignIn
) -> None:
    settings = Settings(portal=PortalSettings(default_language="en"))
    with TestClient(create_app(settings, session_factory=seeded, clock=clock)) as client:
        sign_in(client, StaffRole.NURSE)
        response = client.get("/", params={"lang": "xx"})

    assert '<html lang="en">' in response.text
    assert LANG_COOKIE not in response.cookies


def test_page_loads_htmx_locally_and_polls_the_fragment(client: TestClient) -> None:
    html = client.get("/").text

    assert 'src="/static/htmx.min.js"' in html
    assert not re.search(r'(src|href)="(https?:)?//', html), "no assets from other hosts"
    assert 'hx-get="/partials/overview"' in html
    assert 'hx-trigger="every 5s"' in html
    script = client.get("/static/htmx.min.js")
    assert script.status_code == 200
    assert "htmx" in script.text[:200]
    assert client.get("/static/portal.css").status_code == 200


def test_fragment_shows_a_new_event_without_the_page_around_it(
    client: TestClient, seeded: sessionmaker[Session], clock: FakeClock
) -> None:
    before = client.get("/partials/overview").text
    assert "<html" not in before
    assert BUTTON not in table_text(before, "events")

    clock.advance(timedelta(seconds=5))
    with seeded() as session, session.begin():
        add_event(session, BUTTON, "button", {"action": "press"}, clock.now())
    after = client.get("/partials/overview").text

    events = table_text(after, "events")
    newest_first = (
        'Tid Hjem Enhet Hendelse Data 05.01.2026 13:00:05 h-1001 btn-1001 knapp {"action": "press"}'
    )
    assert events.startswith(newest_first)
    assert "Oppdatert 13:00:05" in after


def test_healthz_is_ok_when_the_database_answers(
    settings: Settings, seeded: sessionmaker[Session]
) -> None:
    app = create_app(settings, session_factory=seeded, ingest_status=lambda: "connected")
    with TestClient(app) as client:
        response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "mqtt": "connected"}


def test_healthz_says_when_the_ingest_is_not_in_this_process(client: TestClient) -> None:
    assert client.get("/healthz").json()["mqtt"] == "not running"


def test_healthz_is_503_when_postgresql_is_unreachable() -> None:
    # Nothing listens on port 1: the connection is refused at once.
    settings = Settings(database=DatabaseSettings(url="postgresql://carehub@127.0.0.1:1/carehub"))
    with TestClient(create_app(settings)) as client:
        response = client.get("/healthz")
        # A browser with a session cookie: checking it needs the database.
        client.cookies.set(SESSION_COOKIE, "a-session-token")
        page = client.get("/")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "degraded"
    assert body["database"].startswith("error: OperationalError")
    assert body["mqtt"] == "not running"
    assert page.status_code == 503
    assert "Databasen svarer ikke" in page.text


def test_healthz_turns_503_when_the_sqlite_database_disappears(
    tmp_path: Path, settings: Settings, clock: FakeClock
) -> None:
    folder = tmp_path / "data"
    engine = make_engine(f"sqlite:///{folder / 'carehub.db'}")
    Base.metadata.create_all(engine)
    factory = make_sessionmaker(engine)
    seed_portal_data(factory)
    nurse_id = staff_user(factory, StaffRole.NURSE)
    with factory() as session, session.begin():
        nurse = session.get(StaffUser, nurse_id)
        assert nurse is not None
        token, _ = create_session(session, nurse, now=T0, ttl_s=3600, mfa_passed=True)
    with TestClient(create_app(settings, session_factory=factory, clock=clock)) as client:
        client.cookies.set(SESSION_COOKIE, token)
        assert client.get("/healthz").status_code == 200

        engine.dispose()
        shutil.rmtree(folder)  # the disk it lived on is gone
        response = client.get("/healthz")
        partial = client.get("/partials/overview", params={"lang": "en"})

    assert response.status_code == 503
    assert response.json()["status"] == "degraded"
    assert response.json()["database"].startswith("error: OperationalError")
    assert partial.status_code == 503
    assert "The database is not answering" in partial.text
    engine.dispose()


def test_metrics_expose_the_hubs_counters_in_prometheus_format(client: TestClient) -> None:
    response = client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "version=" in response.headers["content-type"]
    assert re.search(r"^# TYPE carehub_messages_rejected(_total)? counter$", response.text, re.M)
    assert "# HELP carehub_messages_rejected_total" in response.text
    assert "carehub_mqtt_connected" in response.text
