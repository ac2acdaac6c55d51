"""The nurses' alarm board: Kari's fall first, one tap to take, on site, resolve, all audited."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from care_portal.app import create_app
from hub.alarms import service
from hub.clock import FakeClock
from hub.config import Settings
from hub.storage.models import (
    Alarm,
    AlarmStatus,
    AlarmTimelineEntry,
    AuditEntry,
    Device,
    Notification,
    StaffRole,
)
from tests.care_portal.api_seed import add_alarms, resident_ids
from tests.care_portal.conftest import SignIn, csrf_of, staff_user
from tests.care_portal.seed import RESIDENT_LABEL, T0, seed_portal_data
from tests.care_portal.test_app import text_of


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def alarms(session_factory: sessionmaker[Session]) -> dict[str, int]:
    """Kari's red fall (6 min old) and yellow door alarm (40 min old), open; Ola's resolved."""
    seed_portal_data(session_factory)
    return add_alarms(session_factory)


@pytest.fixture
def changed() -> list[int]:
    return []


@pytest.fixture
def client(
    session_factory: sessionmaker[Session],
    clock: FakeClock,
    alarms: dict[str, int],
    changed: list[int],
) -> Iterator[TestClient]:
    app = create_app(
        Settings(timezone="Europe/Oslo"),
        session_factory=session_factory,
        clock=clock,
        on_alarm_changed=changed.append,
    )
    with TestClient(app, follow_redirects=False) as client:
        yield client


def board_ids(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'id="board-alarm-(\d+)"', html)]


def status_of(factory: sessionmaker[Session], alarm_id: int) -> AlarmStatus:
    with factory() as session:
        alarm = session.get(Alarm, alarm_id)
        assert alarm is not None
        return AlarmStatus(alarm.status)


def audit_actions(factory: sessionmaker[Session]) -> list[tuple[str, str, int | None]]:
    with factory() as session:
        rows = session.execute(
            select(AuditEntry.action, AuditEntry.username, AuditEntry.resident_id).order_by(
                AuditEntry.id
            )
        ).all()
    return [(a, u, r) for a, u, r in rows]


def post(
    client: TestClient,
    factory: sessionmaker[Session],
    path: str,
    data: dict[str, str] | None = None,
    *,
    htmx: bool = False,
) -> tuple[int, str, str | None]:
    form = {"csrf_token": csrf_of(factory, client), **(data or {})}
    headers = {"HX-Request": "true"} if htmx else {}
    response = client.post(path, data=form, headers=headers)
    return response.status_code, response.text, response.headers.get("location")


def test_the_board_shows_kari_s_fall_first_and_the_unanswered_door_alarm_loudly(
    client: TestClient,
    session_factory: sessionmaker[Session],
    alarms: dict[str, int],
    sign_in: SignIn,
) -> None:
    with session_factory() as session, session.begin():
        door = session.get(Alarm, alarms["door"])
        assert door is not None
        door.unanswered = True
    sign_in(client, StaffRole.NURSE)

    response = client.get("/board")

    assert response.status_code == 200
    html = response.text
    assert board_ids(html) == [alarms["fall"], alarms["door"]]  # red first, resolved gone
    assert 'data-testid="unanswered-banner"' in html
    door_card = html[html.index(f'id="board-alarm-{alarms["door"]}"') :]
    assert 'data-testid="alarm-unanswered">UBESVART<' in door_card
    text = text_of(html)
    assert f"Fall · {RESIDENT_LABEL}" in text
    assert "Ta alarmen" in text and "Tatt av ingen ennå" in text
    assert 'sse-connect="/events"' in html and 'hx-trigger="sse:alarms, every 10s"' in html
    assert 'href="/board" aria-current="page"' in html
    kari, _ = resident_ids(session_factory)
    assert audit_actions(session_factory) == [("alarm.board.read", "test-nurse", kari)]


def test_the_fragment_is_audited_at_most_every_few_minutes(
    client: TestClient, session_factory: sessionmaker[Session], clock: FakeClock, sign_in: SignIn
) -> None:
    sign_in(client, StaffRole.COORDINATOR)
    for _ in range(3):
        fragment = client.get("/partials/board").text
        assert "<html" not in fragment and "board-alarm-" in fragment
    assert len(audit_actions(session_factory)) == 1
    clock.advance(timedelta(minutes=6))
    client.get("/partials/board")
    assert len(audit_actions(session_factory)) == 2


def test_an_installer_sees_no_alarms_and_takes_none(
    client: TestClient,
    session_factory: sessionmaker[Session],
    alarms: dict[str, int],
    sign_in: SignIn,
) -> None:
    sign_in(client, StaffRole.INSTALLER)
    for path in ("/board", "/partials/board", f"/alarms/{alarms['fall']}", "/events"):
        assert client.get(path).status_code == 403, path
    status, _, _ = post(client, session_factory, f"/alarms/{alarms['fall']}/take")
    assert status == 403
    assert status_of(session_factory, alarms["fall"]) is AlarmStatus.OPEN
    assert audit_actions(session_factory) == []


def test_without_a_session_the_board_sends_to_sign_in(client: TestClient) -> None:
    response = client.get("/board")
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2Fboard"


def test_a_nurse_takes_the_fall_with_one_tap(
    client: TestClient,
    session_factory: sessionmaker[Session],
    alarms: dict[str, int],
    changed: list[int],
    sign_in: SignIn,
) -> None:
    sign_in(client, StaffRole.NURSE)

    status, _, location = post(client, session_factory, f"/alarms/{alarms['fall']}/take")

    assert (status, location) == (303, "/board")
    assert status_of(session_factory, alarms["fall"]) is AlarmStatus.ACKNOWLEDGED
    with session_factory() as session:
        last = session.scalars(
            select(AlarmTimelineEntry)
            .where(AlarmTimelineEntry.alarm_id == alarms["fall"])
            .order_by(AlarmTimelineEntry.id.desc())
        ).first()
    assert last is not None
    assert (last.kind, last.to_status, last.actor) == (
        "transition",
        "acknowledged",
        "user:test-nurse",
    )
    assert changed == [alarms["fall"]]
    kari, _ = resident_ids(session_factory)
    assert ("alarm.acknowledge", "test-nurse", kari) in audit_actions(session_factory)
    text = text_of(client.get("/board").text)
    assert "Tatt av Test-Nurse" in text and "Fremme" in text


def test_htmx_gets_the_refreshed_board_back(
    client: TestClient,
    session_factory: sessionmaker[Session],
    alarms: dict[str, int],
    sign_in: SignIn,
) -> None:
    sign_in(client, StaffRole.NURSE)
    status, html, _ = post(client, session_factory, f"/alarms/{alarms['fall']}/take", htmx=True)
    assert status == 200
    assert "<html" not in html
    card = html[html.index(f'id="board-alarm-{alarms["fall"]}"') :]
    assert 'data-testid="alarm-status">kvittert<' in card


def test_on_site_before_taking_is_refused_with_a_readable_reason(
    client: TestClient,
    session_factory: sessionmaker[Session],
    alarms: dict[str, int],
    changed: list[int],
    sign_in: SignIn,
) -> None:
    sign_in(client, StaffRole.NURSE)

    status, html, _ = post(client, session_factory, f"/alarms/{alarms['fall']}/on-site")

    assert status == 409
    assert re.search(
        r'role="alert" data-testid="board-error">Ta alarmen før du registrerer at du er fremme\.<',
        html,
    )
    assert board_ids(html) == [alarms["fall"], alarms["door"]]  # the board, shown again
    assert status_of(session_factory, alarms["fall"]) is AlarmStatus.OPEN
    assert changed == []
    # The htmx form gets the fragment with the reason, with the same status.
    status, html, _ = post(client, session_factory, f"/alarms/{alarms['fall']}/on-site", htmx=True)
    assert status == 409 and "<html" not in html and "Ta alarmen før" in html


def test_take_on_site_and_resolve_with_an_outcome_and_a_note(
    client: TestClient,
    session_factory: sessionmaker[Session],
    alarms: dict[str, int],
    changed: list[int],
    sign_in: SignIn,
) -> None:
    sign_in(client, StaffRole.NURSE)
    fall = alarms["fall"]
    assert post(client, session_factory, f"/alarms/{fall}/take")[0] == 303
    assert post(client, session_factory, f"/alarms/{fall}/on-site")[0] == 303
    status, html, _ = post(client, session_factory, f"/alarms/{fall}/resolve")
    assert status == 409 and "Velg et utfall før du avslutter alarmen." in html

    status, _, location = post(
        client,
        session_factory,
        f"/alarms/{fall}/resolve",
        {"outcome": "helped", "note": "  Helped her up, no injury.  ", "back": "alarm"},
    )

    assert (status, location) == (303, f"/alarms/{fall}")
    with session_factory() as session:
        alarm = session.get(Alarm, fall)
        assert alarm is not None
        assert (alarm.status, alarm.outcome) == (AlarmStatus.RESOLVED, "helped")
        last = session.scalars(
            select(AlarmTimelineEntry)
            .where(AlarmTimelineEntry.alarm_id == fall)
            .order_by(AlarmTimelineEntry.id.desc())
        ).first()
        assert last is not None and last.detail["note"] == "Helped her up, no injury."
    assert changed == [fall, fall, fall]
    actions = [a for a, _, _ in audit_actions(session_factory)]
    assert actions.count("alarm.acknowledge") == 1
    assert actions.count("alarm.on_site") == 1
    assert actions.count("alarm.resolve") == 1
    assert board_ids(client.get("/board").text) == [alarms["door"]]
    page = text_of(client.get(f"/alarms/{fall}").text)
    assert "avsluttet · Hjulpet" in page
    assert "Notat: Helped her up, no injury." in page
    # Resolved is final: a second tap says so, and nothing changes.
    status, html, _ = post(client, session_factory, f"/alarms/{fall}/take", {"back": "alarm"})
    assert status == 409 and "Alarmen er allerede avsluttet." in html


def test_an_untaken_alarm_offers_only_the_outcomes_the_lifecycle_allows(
    client: TestClient, alarms: dict[str, int], sign_in: SignIn
) -> None:
    sign_in(client, StaffRole.COORDINATOR)
    html = client.get(f"/alarms/{alarms['door']}").text
    offered = re.findall(r'<option value="(\w+)">', html)
    assert offered == ["false_alarm", "technical", "test"]


@pytest.mark.parametrize("token", [None, "wrong"])
def test_a_post_without_the_csrf_token_changes_nothing(
    client: TestClient,
    session_factory: sessionmaker[Session],
    alarms: dict[str, int],
    changed: list[int],
    sign_in: SignIn,
    token: str | None,
) -> None:
    sign_in(client, StaffRole.NURSE)
    data = {} if token is None else {"csrf_token": token}

    response = client.post(f"/alarms/{alarms['fall']}/take", data=data)

    assert response.status_code == 403
    assert status_of(session_factory, alarms["fall"]) is AlarmStatus.OPEN
    assert changed == []
    assert [a for a, _, _ in audit_actions(session_factory)] == []


def test_the_alarm_page_shows_the_timeline_with_each_notification_s_delivery(
    client: TestClient,
    session_factory: sessionmaker[Session],
    clock: FakeClock,
    alarms: dict[str, int],
    sign_in: SignIn,
) -> None:
    fall = alarms["fall"]
    nurse_id = staff_user(session_factory, StaffRole.NURSE, "kari-nurse")
    with session_factory() as session, session.begin():
        sms = Notification(
            alarm_id=fall,
            channel="sms",
            purpose="alarm",
            recipient_kind="staff",
            recipient_id=nurse_id,
            to_number="+4790000001",
            body="ALARM",
            status="delivered",
            attempts=1,
            step_index=0,
            round=1,
            created_at=T0,
            updated_at=T0 + timedelta(seconds=4),
        )
        session.add(sms)
        session.flush()
        service.add_note(
            session,
            fall,
            now=T0,
            actor="hub:escalation",
            kind="notification",
            detail={"notification_id": sms.id, "channel": "sms", "purpose": "alarm", "step": 1},
        )
        service.add_note(
            session,
            fall,
            now=T0 + timedelta(seconds=4),
            actor="twilio",
            kind="delivery",
            detail={"notification_id": sms.id, "status": "delivered"},
        )
    clock.advance(60)
    sign_in(client, StaffRole.NURSE)

    response = client.get(f"/alarms/{fall}")

    assert response.status_code == 200
    html = response.text
    assert '<html lang="nb">' in html
    timeline = text_of(html[html.index('data-testid="timeline"') :])
    assert "05.01.2026 12:54:00 · huben (regler) Alarmen ble utløst fall detected" in timeline
    assert (
        "05.01.2026 13:00:00 · huben (varsling) Varsel via SMS til Kari-Nurse · trinn 1, runde 1 "
        "· levert" in timeline
    )
    assert "05.01.2026 13:00:04 · twilio Leveringskvittering: levert" in timeline
    row = text_of(re.findall(r'<tr id="notification-\d+">.*?</tr>', html, re.DOTALL)[0])
    assert (
        row
        == "05.01.2026 13:00:00 Kari-Nurse SMS alarm · trinn 1, runde 1 levert 05.01.2026 13:00:04"
    )
    assert 'data-testid="take"' in html
    kari, _ = resident_ids(session_factory)
    assert audit_actions(session_factory) == [("alarm.read", "test-nurse", kari)]
    assert client.get("/alarms/999999").status_code == 404


def test_homes_in_test_mode_are_named_on_the_board_until_test_mode_ends(
    client: TestClient,
    session_factory: sessionmaker[Session],
    clock: FakeClock,
    sign_in: SignIn,
) -> None:
    """A nurse sees which homes' devices are in test mode (they alert nobody) and until when."""
    from tests.care_portal.seed import FALL_SENSOR, HOME

    sign_in(client, StaffRole.NURSE)
    with session_factory() as session, session.begin():
        for device in session.scalars(select(Device)):
            device.test_mode_until = None
    assert 'data-testid="test-mode-banner"' not in client.get("/board").text
    with session_factory() as session, session.begin():
        device = session.get(Device, FALL_SENSOR)
        assert device is not None
        device.test_mode_until = clock.now() + timedelta(minutes=30)
    html = client.get("/partials/board").text
    assert 'data-testid="test-mode-banner"' in html
    assert f"{HOME}: 1 enhet(er) i testmodus til 13:30:00" in text_of(html)  # Oslo time
    clock.advance(timedelta(minutes=31))
    assert 'data-testid="test-mode-banner"' not in client.get("/partials/board").text
