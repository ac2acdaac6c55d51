"""Live updates: a fall opened in the hub reaches a signed-in board over Server-Sent Events."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from care_portal.app import create_app
from care_portal.routers import events
from hub.alarms import service
from hub.clock import FakeClock
from hub.config import Settings
from hub.storage.models import Severity, StaffRole
from tests.care_portal.api_seed import resident_ids
from tests.care_portal.conftest import SignIn
from tests.care_portal.seed import FALL_SENSOR, HOME, T0, seed_portal_data


@pytest.fixture
def fast_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ticks of 20 ms and a stream that ends by itself after at most 10 s."""
    monkeypatch.setattr(events, "TICK_S", 0.02)
    monkeypatch.setattr(events, "MAX_TICKS", 500)


@pytest.fixture
def client(session_factory: sessionmaker[Session], fast_stream: None) -> Iterator[TestClient]:
    seed_portal_data(session_factory)
    app = create_app(
        Settings(timezone="Europe/Oslo"), session_factory=session_factory, clock=FakeClock(T0)
    )
    with TestClient(app, follow_redirects=False) as client:
        yield client


def open_fall(factory: sessionmaker[Session]) -> int:
    kari, _ = resident_ids(factory)
    with factory() as session, session.begin():
        alarm, _ = service.open_or_join(
            session,
            now=T0,
            resident_id=kari,
            home_id=HOME,
            type="fall",
            severity=Severity.RED,
            summary="fall detected",
            device_id=FALL_SENSOR,
        )
        return alarm.id


def test_a_new_fall_is_announced_as_alarms_and_red(
    client: TestClient, session_factory: sessionmaker[Session], sign_in: SignIn
) -> None:
    sign_in(client, StaffRole.NURSE)
    seen: list[str] = []
    fall_id: int | None = None
    with client.stream("GET", "/events") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            seen.append(line)
            if line == ": connected" and fall_id is None:
                fall_id = open_fall(session_factory)  # the stream has its baseline by now
            if line == f"data: {fall_id}" and "event: red" in seen:
                break
            assert len(seen) < 200, seen
    assert fall_id is not None
    events_seen = [line for line in seen if line.startswith("event: ")]
    assert events_seen == ["event: alarms", "event: red"]
    assert seen[0] == "retry: 3000"
    assert any(line.startswith("id: ") and line.endswith(f"-{fall_id}") for line in seen)


def test_a_stream_ends_by_itself_with_heartbeats_in_between(
    client: TestClient, sign_in: SignIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events, "MAX_TICKS", 4)
    monkeypatch.setattr(events, "HEARTBEAT_EVERY_TICKS", 2)
    sign_in(client, StaffRole.COORDINATOR)
    body = client.get("/events").text  # returns only because the stream ends
    assert body.count(": heartbeat") == 2
    assert "event:" not in body


def test_a_board_that_reconnects_after_a_change_catches_up_at_once(
    client: TestClient,
    session_factory: sessionmaker[Session],
    sign_in: SignIn,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(events, "MAX_TICKS", 1)
    sign_in(client, StaffRole.NURSE)
    fall_id = open_fall(session_factory)
    body = client.get("/events", headers={"Last-Event-ID": "0000000000000000-0"}).text
    assert "event: alarms" in body
    same = body.split("id: ", 1)[1].split("\n", 1)[0]
    assert same.endswith(f"-{fall_id}")
    # Nothing changed since that id: no catch-up event.
    assert "event:" not in client.get("/events", headers={"Last-Event-ID": same}).text


def test_only_signed_in_care_staff_get_the_stream(client: TestClient, sign_in: SignIn) -> None:
    assert client.get("/events").status_code == 303  # to the sign-in page
    sign_in(client, StaffRole.INSTALLER)
    assert client.get("/events").status_code == 403
