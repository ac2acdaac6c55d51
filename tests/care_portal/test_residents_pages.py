"""Residents' pages: Kari's profile for the care team, her absence, and the log of every look."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from care_portal.app import create_app
from hub.clock import FakeClock
from hub.config import Settings
from hub.storage.models import (
    AuditEntry,
    Relative,
    RelativeRole,
    Resident,
    StaffRole,
)
from tests.care_portal.api_seed import resident_ids
from tests.care_portal.conftest import SignIn, csrf_of
from tests.care_portal.seed import (
    DOOR_CONTACT,
    FALL_SENSOR,
    T0,
    add_event,
    seed_portal_data,
)
from tests.care_portal.test_app import text_of

MOTION = "motion-1001"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def seeded(session_factory: sessionmaker[Session]) -> sessionmaker[Session]:
    """The portal's care story, plus Kari's son Per (acting) and a week of her movements."""
    seed_portal_data(session_factory)
    kari, _ = resident_ids(session_factory)
    with session_factory() as session, session.begin():
        session.add(
            Relative(
                resident_id=kari,
                name="Per Nordmann",
                phone="+47 912 34 567",
                priority=1,
                role=RelativeRole.ACTING,
                quiet_start=time(22, 0),
                quiet_end=time(7, 0),
                created_at=T0,
            )
        )
        # 08:xx Oslo time (07:xx UTC in winter) on three mornings, once at 21:xx, and two that
        # must not count: eight days ago, and a "no motion" report.
        for days_ago in (1, 2, 3):
            at = datetime(2026, 1, 5, 7, 15, tzinfo=UTC) - timedelta(days=days_ago)
            add_event(session, FALL_SENSOR, "motion", {"motion": True}, at)
        add_event(
            session,
            FALL_SENSOR,
            "motion",
            {"motion": True},
            datetime(2026, 1, 4, 20, 5, tzinfo=UTC),
        )
        add_event(session, FALL_SENSOR, "motion", {"motion": True}, T0 - timedelta(days=8))
        add_event(
            session,
            FALL_SENSOR,
            "motion",
            {"motion": False},
            datetime(2026, 1, 3, 7, 40, tzinfo=UTC),
        )
    return session_factory


@pytest.fixture
def client(seeded: sessionmaker[Session], clock: FakeClock) -> Iterator[TestClient]:
    app = create_app(Settings(timezone="Europe/Oslo"), session_factory=seeded, clock=clock)
    with TestClient(app, follow_redirects=False) as client:
        yield client


def audit_entries(factory: sessionmaker[Session], action: str) -> list[AuditEntry]:
    with factory() as session:
        return list(
            session.scalars(
                select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)
            )
        )


def motion_bars(html: str) -> dict[str, int]:
    """Hour label → motion count of the profile's activity chart."""
    svg = re.search(r'<svg[^>]*id="motion-chart".*?</svg>', html, re.DOTALL)
    assert svg, "the activity chart is not on the page"
    return {
        label: int(value)
        for label, value in re.findall(
            r'<rect class="bar"[^>]*data-label="(\d\d)" data-value="(\d+)"', svg.group(0)
        )
    }


def test_a_nurse_sees_kari_s_devices_and_relatives_with_the_phone_masked(
    client: TestClient, seeded: sessionmaker[Session], sign_in: SignIn
) -> None:
    nurse = sign_in(client, StaffRole.NURSE)
    kari, _ = resident_ids(seeded)

    response = client.get(f"/residents/{kari}")

    assert response.status_code == 200
    html = response.text
    devices = text_of(re.search(r'<table[^>]*id="devices".*?</table>', html, re.DOTALL).group(0))  # type: ignore[union-attr]
    assert FALL_SENSOR in devices and "tilkoblet" in devices and "87 %" in devices
    assert DOOR_CONTACT in devices and "frakoblet" in devices and "12 % (lavt)" in devices
    assert "old-1001" not in html  # retired
    relatives = text_of(
        re.search(r'<table[^>]*id="relatives".*?</table>', html, re.DOTALL).group(0)  # type: ignore[union-attr]
    )
    assert "Per Nordmann" in relatives
    assert "handlende" in relatives and "22:00–07:00" in relatives
    assert "••••••••67" in relatives
    assert "912" not in html and "34 567" not in html
    entries = audit_entries(seeded, "resident.read")
    assert [(e.resident_id, e.username, e.role) for e in entries] == [
        (kari, nurse.username, "nurse")
    ]


def test_the_activity_chart_has_a_bar_per_hour_with_last_week_s_motion(
    client: TestClient, seeded: sessionmaker[Session], sign_in: SignIn
) -> None:
    sign_in(client, StaffRole.NURSE)
    kari, _ = resident_ids(seeded)

    html = client.get(f"/residents/{kari}").text

    bars = motion_bars(html)
    assert len(bars) == 24
    assert bars["08"] == 3  # three mornings at 08:15 Oslo time
    assert bars["21"] == 1
    assert sum(bars.values()) == 4  # not the one 8 days ago, not the "no motion"
    table = text_of(re.search(r'<table[^>]*id="motion-table".*?</table>', html, re.DOTALL).group(0))  # type: ignore[union-attr]
    assert "08:00–08:59 3" in table
    assert 'role="img"' in html and "<title" in html  # the chart has a text name


def test_the_profile_marks_rule_overrides(
    client: TestClient, seeded: sessionmaker[Session], sign_in: SignIn
) -> None:
    kari, _ = resident_ids(seeded)
    with seeded() as session, session.begin():
        resident = session.get(Resident, kari)
        assert resident is not None
        resident.rule_config = {"door_grace_s": 900}
    sign_in(client, StaffRole.COORDINATOR)

    html = client.get(f"/residents/{kari}", params={"lang": "en"}).text

    rows = re.findall(r"<tr[^>]*>.*?</tr>", html, re.DOTALL)
    grace = next(text_of(r) for r in rows if "Door at night: grace" in r)
    assert grace == "Door at night: grace (s) 900 overridden"
    bathroom = next(text_of(r) for r in rows if "Long bathroom visit: limit" in r)
    assert bathroom == "Long bathroom visit: limit (s) 2700 default"


def test_an_installer_is_refused_residents_and_their_profiles(
    client: TestClient, seeded: sessionmaker[Session], sign_in: SignIn
) -> None:
    sign_in(client, StaffRole.INSTALLER)
    kari, _ = resident_ids(seeded)

    assert client.get("/residents").status_code == 403
    assert client.get(f"/residents/{kari}").status_code == 403
    assert "Per Nordmann" not in client.get(f"/residents/{kari}").text
    assert audit_entries(seeded, "resident.read") == []


def test_signed_out_visitors_are_sent_to_sign_in(client: TestClient) -> None:
    response = client.get("/residents")
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login")


def test_the_list_shows_zone_home_and_absence_and_logs_each_resident(
    client: TestClient, seeded: sessionmaker[Session], sign_in: SignIn
) -> None:
    kari, ola = resident_ids(seeded)
    with seeded() as session, session.begin():
        resident = session.get(Resident, ola)
        assert resident is not None
        resident.absence_until = T0 + timedelta(days=3)
    sign_in(client, StaffRole.NURSE)

    html = client.get("/residents").text

    table = text_of(re.search(r'<table[^>]*id="residents".*?</table>', html, re.DOTALL).group(0))  # type: ignore[union-attr]
    assert "Kari Nordmann Ørje h-1001, Storgata 1 Hjemme" in table
    assert "Ola Hansen Mysen h-1002, Torget 2 Borte til og med 08.01.2026" in table
    assert sorted(e.resident_id for e in audit_entries(seeded, "resident.list.read")) == [
        kari,
        ola,
    ]


def test_absence_mode_is_set_until_the_end_of_a_day_and_cleared(
    client: TestClient, seeded: sessionmaker[Session], sign_in: SignIn
) -> None:
    sign_in(client, StaffRole.NURSE)
    kari, _ = resident_ids(seeded)
    token = csrf_of(seeded, client)

    response = client.post(
        f"/residents/{kari}/absence", data={"csrf_token": token, "until": "2026-01-09"}
    )

    assert response.status_code == 303
    assert response.headers["location"] == f"/residents/{kari}?saved=absence"
    with seeded() as session:
        resident = session.get(Resident, kari)
        assert resident is not None
        # Friday 9 January included: the rules resume at midnight Oslo time (23:00 UTC).
        assert resident.absence_until == datetime(2026, 1, 9, 23, 0, tzinfo=UTC)
    html = client.get(f"/residents/{kari}").text
    assert "Borte til og med 09.01.2026" in html
    [entry] = audit_entries(seeded, "resident.absence")
    assert entry.resident_id == kari and entry.detail["from"] is None

    client.post(f"/residents/{kari}/absence", data={"csrf_token": token, "action": "clear"})

    with seeded() as session:
        resident = session.get(Resident, kari)
        assert resident is not None and resident.absence_until is None
    assert len(audit_entries(seeded, "resident.absence")) == 2


def test_a_bad_absence_date_is_shown_on_the_form_and_nothing_changes(
    client: TestClient, seeded: sessionmaker[Session], sign_in: SignIn
) -> None:
    sign_in(client, StaffRole.NURSE)
    kari, _ = resident_ids(seeded)
    token = csrf_of(seeded, client)

    past = client.post(
        f"/residents/{kari}/absence", data={"csrf_token": token, "until": "2026-01-01"}
    )
    garbage = client.post(
        f"/residents/{kari}/absence", data={"csrf_token": token, "until": "next week"}
    )

    assert past.status_code == 400
    assert "Datoen har passert" in past.text
    assert 'aria-invalid="true" aria-describedby="absence-until-error"' in past.text
    assert garbage.status_code == 400
    assert "Skriv en dato" in garbage.text and 'value="next week"' in garbage.text
    with seeded() as session:
        resident = session.get(Resident, kari)
        assert resident is not None and resident.absence_until is None
    assert audit_entries(seeded, "resident.absence") == []


def test_absence_without_the_csrf_token_is_refused(
    client: TestClient, seeded: sessionmaker[Session], sign_in: SignIn
) -> None:
    sign_in(client, StaffRole.NURSE)
    kari, _ = resident_ids(seeded)

    response = client.post(f"/residents/{kari}/absence", data={"until": "2026-01-09"})

    assert response.status_code == 403
    with seeded() as session:
        resident = session.get(Resident, kari)
        assert resident is not None and resident.absence_until is None


def test_an_unknown_resident_is_404(client: TestClient, sign_in: SignIn) -> None:
    sign_in(client, StaffRole.NURSE)
    assert client.get("/residents/99999").status_code == 404
