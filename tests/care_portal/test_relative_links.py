"""A relative's SMS link: signed, expiring, no login, and only "the home-care service has it"."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from care_portal.app import create_app
from hub.alarms import service
from hub.clock import FakeClock
from hub.config import SecuritySettings, Settings
from hub.relative_links import make_relative_link, verify_relative_link
from hub.storage.models import AlarmStatus, AuditEntry, Relative, RelativeRole
from tests.care_portal.api_seed import add_alarms, resident_ids
from tests.care_portal.seed import RESIDENT_LABEL, T0, seed_portal_data
from tests.care_portal.test_app import text_of

SECRET = "test-link-secret-0123456789abcdef"
TTL_S = 3600


def test_a_token_round_trips_and_nothing_else_verifies() -> None:
    token = make_relative_link(42, 7, now=T0, ttl_s=TTL_S, secret=SECRET)
    assert verify_relative_link(token, now=T0, secret=SECRET) == (42, 7)
    late = T0 + timedelta(seconds=TTL_S)
    assert verify_relative_link(token, now=late - timedelta(seconds=1), secret=SECRET) == (42, 7)
    assert verify_relative_link(token, now=late, secret=SECRET) is None  # expired
    assert verify_relative_link(token, now=T0, secret=SECRET + "x") is None  # other secret
    alarm, relative, expires, signature = token.split(".")
    for forged in (
        f"43.{relative}.{expires}.{signature}",  # another alarm
        f"{alarm}.8.{expires}.{signature}",  # another relative
        f"{alarm}.{relative}.{int(expires) + 86400}.{signature}",  # a longer life
        f"{alarm}.{relative}.{expires}.{signature[:-1]}A",
        f"{alarm}.{relative}.{expires}",
        "",
        "../../etc/passwd",
    ):
        assert verify_relative_link(forged, now=T0, secret=SECRET) is None, forged


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def story(session_factory: sessionmaker[Session]) -> dict[str, int]:
    """Kari's open fall and door alarms, her daughter Anne (acting), Ola's son Per."""
    seed_portal_data(session_factory)
    ids = add_alarms(session_factory)
    kari, ola = resident_ids(session_factory)
    with session_factory() as session, session.begin():
        anne = _relative(kari, "Anne Nordmann")
        per = _relative(ola, "Per Hansen")
        session.add_all([anne, per])
        session.flush()
        ids.update(anne=anne.id, per=per.id, kari=kari)
    return ids


def _relative(resident_id: int, name: str) -> Relative:
    return Relative(
        resident_id=resident_id,
        name=name,
        phone="+4791234567",
        priority=1,
        role=RelativeRole.ACTING,
        language="nb",
        created_at=T0,
    )


def make_client(factory: sessionmaker[Session], clock: FakeClock, secret: str | None) -> TestClient:
    settings = Settings(timezone="Europe/Oslo", security=SecuritySettings(link_secret=secret))
    return TestClient(create_app(settings, session_factory=factory, clock=clock))


@pytest.fixture
def client(session_factory: sessionmaker[Session], clock: FakeClock) -> Iterator[TestClient]:
    with make_client(session_factory, clock, SECRET) as client:
        yield client


def link(alarm_id: int, relative_id: int, *, secret: str = SECRET) -> str:
    return "/r/" + make_relative_link(alarm_id, relative_id, now=T0, ttl_s=TTL_S, secret=secret)


def assert_shows_nothing(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    text = text_of(response.text)
    assert text == "Siden finnes ikke Siden finnes ikke", text


def test_anne_sees_in_plain_words_that_the_service_has_the_alarm(
    client: TestClient,
    session_factory: sessionmaker[Session],
    clock: FakeClock,
    story: dict[str, int],
) -> None:
    path = link(story["fall"], story["anne"])

    response = client.get(path)  # no session cookie: no login

    assert response.status_code == 200
    assert response.headers["referrer-policy"] == "no-referrer"
    text = text_of(response.text)
    assert "Hjemmetjenesten har fått alarmen og følger den opp." in text
    for secret in ("Fall", "fall", RESIDENT_LABEL, "Kari", "Anne", "h-1001", "rød"):
        assert secret not in response.text, secret
    with session_factory() as session:
        entry = session.scalars(select(AuditEntry)).one()
    assert (entry.action, entry.username, entry.resident_id) == (
        "relative_link.read",
        "-",
        story["kari"],
    )
    assert entry.detail == {"alarm_id": story["fall"], "relative_id": story["anne"]}

    with session_factory() as session, session.begin():
        service.transition(
            session,
            story["fall"],
            to=AlarmStatus.ACKNOWLEDGED,
            actor="user:nurse",
            now=clock.now(),
        )
    taken = text_of(client.get(path).text)
    assert "Hjemmetjenesten har tatt alarmen og er på vei." in taken
    assert "nurse" not in taken.lower()
    with session_factory() as session, session.begin():
        service.transition(
            session, story["fall"], to=AlarmStatus.ON_SITE, actor="user:nurse", now=clock.now()
        )
    assert "Hjemmetjenesten er på plass." in text_of(client.get(path).text)
    with session_factory() as session, session.begin():
        service.transition(
            session,
            story["fall"],
            to=AlarmStatus.RESOLVED,
            actor="user:nurse",
            now=clock.now(),
            outcome="helped",
        )
    closed = client.get(path, params={"lang": "en"}).text
    assert "The alarm is closed." in text_of(closed)
    assert "helped" not in closed.lower()


def test_forged_tampered_and_foreign_links_show_nothing(
    client: TestClient, session_factory: sessionmaker[Session], story: dict[str, int]
) -> None:
    genuine = link(story["fall"], story["anne"])
    alarm, relative, expires, signature = genuine.removeprefix("/r/").split(".")
    assert_shows_nothing(client, link(story["fall"], story["anne"], secret="guessed"))
    assert_shows_nothing(client, f"/r/{story['door']}.{relative}.{expires}.{signature}")
    assert_shows_nothing(client, f"/r/{alarm}.{relative}.{int(expires) + 1}.{signature}")
    assert_shows_nothing(client, "/r/not-a-token")
    # Genuinely signed, but Per is Ola's son, not Kari's: he sees nothing of her alarm.
    assert_shows_nothing(client, link(story["fall"], story["per"]))
    assert_shows_nothing(client, link(999999, story["anne"]))
    with session_factory() as session:
        assert session.scalars(select(AuditEntry)).all() == []


def test_an_expired_link_shows_nothing(
    client: TestClient, clock: FakeClock, story: dict[str, int]
) -> None:
    path = link(story["fall"], story["anne"])
    clock.advance(TTL_S - 1)
    assert client.get(path).status_code == 200
    clock.advance(1)
    assert_shows_nothing(client, path)


def test_without_a_link_secret_every_link_shows_nothing(
    session_factory: sessionmaker[Session],
    clock: FakeClock,
    story: dict[str, int],
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level("WARNING"), make_client(session_factory, clock, None) as client:
        assert_shows_nothing(client, link(story["fall"], story["anne"]))
    assert "link_secret is not set" in caplog.text
