"""The audit log: an admin searches it, a resident's access report is exported, both audited."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from care_portal.app import create_app
from care_portal.web_session import audit
from hub.clock import FakeClock
from hub.config import Settings
from hub.storage.models import AuditEntry, StaffRole, StaffUser
from tests.care_portal.api_seed import resident_ids
from tests.care_portal.conftest import SignIn, staff_user
from tests.care_portal.seed import T0, seed_portal_data
from tests.care_portal.test_app import table_text, text_of

NURSE = "nurse-nina"
INSTALLER = "installer-ivar"


@pytest.fixture
def seeded(session_factory: sessionmaker[Session]) -> sessionmaker[Session]:
    """Kari and Ola; Nina (nurse) read Kari's profile and alarm and Ola's profile; Ivar (installer)
    signed in. One of Nina's looks was at 00:30 Oslo time on 5 January (23:30 UTC the day before).
    """
    seed_portal_data(session_factory)
    kari, ola = resident_ids(session_factory)
    nurse_id = staff_user(session_factory, StaffRole.NURSE, NURSE)
    installer_id = staff_user(session_factory, StaffRole.INSTALLER, INSTALLER)
    with session_factory() as session, session.begin():
        nina = session.get(StaffUser, nurse_id)
        ivar = session.get(StaffUser, installer_id)
        for at, user, action, resident in (
            (datetime(2026, 1, 4, 23, 30, tzinfo=UTC), nina, "resident.read", kari),
            (T0 - timedelta(hours=2), nina, "alarm.read", kari),
            (T0 - timedelta(hours=1), nina, "resident.read", ola),
            (T0 - timedelta(minutes=30), ivar, "login", None),
        ):
            entry = audit(
                session, request=None, user=user, action=action, now=at, resident_id=resident
            )
            entry.ip = "10.0.0.7"
    return session_factory


@pytest.fixture
def client(seeded: sessionmaker[Session]) -> Iterator[TestClient]:
    app = create_app(Settings(timezone="Europe/Oslo"), session_factory=seeded, clock=FakeClock(T0))
    with TestClient(app, follow_redirects=False) as client:
        yield client


def entries(factory: sessionmaker[Session], action: str) -> list[AuditEntry]:
    with factory() as session:
        return list(
            session.scalars(
                select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)
            )
        )


def test_an_admin_finds_who_read_kari_s_profile(
    client: TestClient, seeded: sessionmaker[Session], sign_in: SignIn
) -> None:
    admin = sign_in(client, StaffRole.ADMIN)
    kari, _ola = resident_ids(seeded)

    response = client.get("/audit", params={"resident": kari, "action": "resident"})

    assert response.status_code == 200
    table = table_text(response.text, "audit-entries")
    assert NURSE in table
    assert "resident.read" in table
    assert "alarm.read" not in table  # another action
    assert "05.01.2026 00:30:00" in table  # local time, Bokmål format
    assert "1 oppføringer" in text_of(response.text)
    [search] = entries(seeded, "audit.search")
    assert search.username == admin.username
    assert search.resident_id == kari
    assert search.detail == {"action": "resident", "resident_id": kari, "page": 1}


def test_the_search_filters_by_user_and_local_days_newest_first(
    client: TestClient, seeded: sessionmaker[Session], sign_in: SignIn
) -> None:
    sign_in(client, StaffRole.ADMIN)

    response = client.get(
        "/audit", params={"username": NURSE.upper(), "from": "2026-01-05", "to": "2026-01-05"}
    )

    assert response.status_code == 200
    table = table_text(response.text, "audit-entries")
    assert INSTALLER not in table
    # Three of Nina's looks, all on 5 January in Oslo, the newest first.
    assert table.index("12:00:00") < table.index("11:00:00") < table.index("00:30:00")
    only_the_4th = client.get("/audit", params={"username": NURSE, "to": "2026-01-04"})
    assert "audit-entries" not in only_the_4th.text


def test_the_log_is_paged_by_fifty(
    client: TestClient, seeded: sessionmaker[Session], sign_in: SignIn
) -> None:
    sign_in(client, StaffRole.ADMIN)
    with seeded() as session, session.begin():
        for minute in range(60):
            audit(
                session,
                request=None,
                user=None,
                action="test.bulk",
                now=T0 - timedelta(days=1, minutes=minute),
            )

    first = client.get("/audit", params={"action": "test.bulk"})
    second = client.get("/audit", params={"action": "test.bulk", "page": "2"})

    assert first.text.count("<code>test.bulk</code>") == 50
    assert 'rel="next"' in first.text and 'rel="prev"' not in first.text
    assert second.text.count("<code>test.bulk</code>") == 10
    assert 'rel="prev"' in second.text and 'rel="next"' not in second.text


@pytest.mark.parametrize("role", [StaffRole.NURSE, StaffRole.INSTALLER, StaffRole.COORDINATOR])
def test_only_admins_may_search_the_log(
    client: TestClient, seeded: sessionmaker[Session], sign_in: SignIn, role: StaffRole
) -> None:
    sign_in(client, role)

    response = client.get("/audit")

    assert response.status_code == 403
    assert entries(seeded, "audit.search") == []


def test_the_audit_link_is_in_the_menu_for_admins_only(client: TestClient, sign_in: SignIn) -> None:
    sign_in(client, StaffRole.ADMIN)
    assert 'href="/audit"' in client.get("/reports").text
    sign_in(client, StaffRole.COORDINATOR)
    assert 'href="/audit"' not in client.get("/reports").text


@pytest.mark.parametrize(
    ("params", "shown"),
    [
        ({"from": "2026-13-01"}, "2026-13-01"),
        ({"to": "yesterday"}, "yesterday"),
        ({"from": "2026-01-05", "to": "2026-01-01"}, "2026-01-01"),
        ({"resident": "kari"}, "kari"),
    ],
)
def test_bad_filters_are_shown_back_not_searched(
    client: TestClient,
    seeded: sessionmaker[Session],
    sign_in: SignIn,
    params: dict[str, str],
    shown: str,
) -> None:
    sign_in(client, StaffRole.ADMIN)

    response = client.get("/audit", params=params)

    assert response.status_code == 400
    assert 'role="alert"' in response.text
    assert f'value="{shown}"' in response.text
    assert "audit-entries" not in response.text
    assert entries(seeded, "audit.search") == []


def test_kari_s_access_report_lists_who_looked_and_is_itself_audited(
    client: TestClient, seeded: sessionmaker[Session], sign_in: SignIn
) -> None:
    coordinator = sign_in(client, StaffRole.COORDINATOR)
    kari, _ola = resident_ids(seeded)

    response = client.get(f"/residents/{kari}/access-report.csv")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"] == (
        f'attachment; filename="carehub-access-report-{kari}-2026-01-05.csv"'
    )
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == ["time", "username", "role", "action", "ip"]
    assert rows[1:] == [
        ["2026-01-05T00:30:00+01:00", NURSE, "nurse", "resident.read", "10.0.0.7"],
        ["2026-01-05T11:00:00+01:00", NURSE, "nurse", "alarm.read", "10.0.0.7"],
    ]
    [export] = entries(seeded, "resident.access_report")
    assert (export.username, export.role, export.resident_id) == (
        coordinator.username,
        "coordinator",
        kari,
    )
    # The next report shows this one.
    again = client.get(f"/residents/{kari}/access-report.csv")
    assert "resident.access_report" in again.text


def test_the_profile_links_the_access_report_for_coordinators_not_nurses(
    client: TestClient, seeded: sessionmaker[Session], sign_in: SignIn
) -> None:
    kari, _ola = resident_ids(seeded)
    link = f'href="/residents/{kari}/access-report.csv"'
    sign_in(client, StaffRole.COORDINATOR)
    assert link in client.get(f"/residents/{kari}").text
    sign_in(client, StaffRole.NURSE)
    assert link not in client.get(f"/residents/{kari}").text


@pytest.mark.parametrize("role", [StaffRole.NURSE, StaffRole.INSTALLER])
def test_nurses_and_installers_may_not_export_an_access_report(
    client: TestClient, seeded: sessionmaker[Session], sign_in: SignIn, role: StaffRole
) -> None:
    sign_in(client, role)
    kari, _ola = resident_ids(seeded)

    assert client.get(f"/residents/{kari}/access-report.csv").status_code == 403
    assert entries(seeded, "resident.access_report") == []


def test_an_unknown_resident_has_no_access_report(client: TestClient, sign_in: SignIn) -> None:
    sign_in(client, StaffRole.ADMIN)

    assert client.get("/residents/999999/access-report.csv").status_code == 404
