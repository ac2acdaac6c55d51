"""The overview's "Open alarms" section: most urgent first, translated, refreshed live."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from care_portal.app import create_app
from care_portal.i18n import LANGUAGES, Language, load_catalogues
from hub.alarms import service
from hub.clock import FakeClock
from hub.config import Settings
from hub.rules.model import AlarmType
from hub.storage.models import AlarmStatus, Severity, StaffRole
from tests.care_portal.api_seed import add_alarms, resident_ids
from tests.care_portal.conftest import SignIn
from tests.care_portal.seed import HOME, RESIDENT_LABEL, T0, seed_portal_data
from tests.care_portal.test_app import text_of


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def seeded(session_factory: sessionmaker[Session]) -> sessionmaker[Session]:
    seed_portal_data(session_factory)
    return session_factory


@pytest.fixture
def client(
    seeded: sessionmaker[Session], clock: FakeClock, sign_in: SignIn
) -> Iterator[TestClient]:
    """A nurse's browser, signed in."""
    app = create_app(Settings(timezone="Europe/Oslo"), session_factory=seeded, clock=clock)
    with TestClient(app) as client:
        sign_in(client, StaffRole.NURSE)
        yield client


def alarms_section(html: str) -> str:
    match = re.search(r'<section class="open-alarms".*?</section>', html, re.DOTALL)
    assert match, "the open alarms section is not on the page"
    return match.group(0)


def alarm_rows(html: str) -> list[str]:
    """The text of each open alarm's row, in page order."""
    return [text_of(row) for row in re.findall(r'<tr id="alarm-\d+".*?</tr>', html, re.DOTALL)]


def test_kari_s_fall_is_the_first_thing_on_the_page(
    client: TestClient, seeded: sessionmaker[Session]
) -> None:
    alarms = add_alarms(seeded)  # red fall 6 min ago, yellow door 40 min ago, a resolved one

    html = client.get("/").text

    section = alarms_section(html)
    assert html.index("open-alarms") < html.index('class="intake"')  # at the top
    assert re.search(r'data-testid="open-alarm-count">2<', section)
    rows = alarm_rows(section)
    assert rows == [
        f"rød {RESIDENT_LABEL} {HOME} Fall fall detected åpen 05.01.2026 12:54:00 6 min",
        f"gul {RESIDENT_LABEL} {HOME} Dør om natten door open since 12:20, not back within "
        "10 min åpen 05.01.2026 12:20:00 40 min",
    ]
    assert f'id="alarm-{alarms["fall"]}" class="alarm alarm--red"' in section
    assert f"alarm-{alarms['battery']}" not in section  # resolved: not open any more


def test_the_fragment_follows_the_lifecycle_and_the_clock(
    client: TestClient, seeded: sessionmaker[Session], clock: FakeClock
) -> None:
    assert "Ingen åpne alarmer." in client.get("/partials/overview").text
    kari, _ = resident_ids(seeded)
    with seeded() as session, session.begin():
        button, _ = service.open_or_join(
            session,
            now=clock.now(),
            resident_id=kari,
            home_id=HOME,
            type=AlarmType.BUTTON,
            severity=Severity.RED,
            summary="",
        )

    clock.advance(timedelta(hours=1, minutes=5))
    with seeded() as session, session.begin():
        service.transition(
            session, button.id, to=AlarmStatus.ACKNOWLEDGED, actor="user:nurse", now=clock.now()
        )
    fragment = client.get("/partials/overview", params={"lang": "en"}).text

    assert "<html" not in fragment
    [row] = alarm_rows(alarms_section(fragment))
    assert (
        row
        == f"red {RESIDENT_LABEL} {HOME} Alarm button acknowledged 2026-01-05 13:00:00 1 h 5 min"
    )

    with seeded() as session, session.begin():
        service.transition(
            session,
            button.id,
            to=AlarmStatus.RESOLVED,
            actor="user:nurse",
            now=clock.now(),
            outcome="no_action_needed",
        )
    assert "No open alarms." in client.get("/partials/overview", params={"lang": "en"}).text


def test_joined_events_are_counted_on_the_board(
    client: TestClient, seeded: sessionmaker[Session], clock: FakeClock
) -> None:
    kari, _ = resident_ids(seeded)
    for _ in range(3):
        with seeded() as session, session.begin():
            service.open_or_join(
                session,
                now=clock.now(),
                resident_id=kari,
                home_id=HOME,
                type=AlarmType.FALL,
                severity=Severity.RED,
                summary="fall",
            )

    [row] = alarm_rows(alarms_section(client.get("/", params={"lang": "en"}).text))
    assert "Fall (3 events)" in row


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_alarm_type_status_and_severity_has_a_label(language: Language) -> None:
    catalogue = load_catalogues()[language]
    wanted = (
        [f"alarm_type.{value}" for value in AlarmType]
        + [f"alarm_status.{value}" for value in AlarmStatus]
        + [f"severity.{value}" for value in Severity]
    )
    assert [key for key in wanted if key not in catalogue] == []


def test_an_unanswered_alarm_is_impossible_to_miss(
    client: TestClient, seeded: sessionmaker[Session]
) -> None:
    alarms = add_alarms(seeded)
    assert 'data-testid="unanswered-banner"' not in client.get("/").text
    with seeded() as session, session.begin():
        fall = service.get_alarm(session, alarms["fall"])
        fall.unanswered = True  # what the escalation engine sets after the last round
    html = alarms_section(client.get("/").text)
    assert "1 alarm(er) er UBESVART" in text_of(html)
    [fall_row] = [row for row in alarm_rows(html) if "UBESVART" in row]
    assert RESIDENT_LABEL in fall_row
    english = alarms_section(client.get("/?lang=en").text)
    assert "UNANSWERED" in text_of(english)
