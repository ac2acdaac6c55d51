"""Roster and policy pages: a coordinator plans who is on duty and how alarms escalate."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from care_portal.app import create_app
from hub.clock import FakeClock
from hub.config import Settings
from hub.escalation.policy import ensure_default_policies
from hub.storage.models import (
    AuditEntry,
    EscalationPolicy,
    Resident,
    ShiftOverride,
    ShiftPattern,
    StaffRole,
    Zone,
)
from tests.care_portal.api_seed import resident_ids
from tests.care_portal.conftest import SignIn, csrf_of, staff_user
from tests.care_portal.seed import T0, seed_portal_data
from tests.care_portal.test_app import text_of

# T0 is Monday 5 January 2026, 13:00 in Oslo.


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def seeded(session_factory: sessionmaker[Session]) -> sessionmaker[Session]:
    seed_portal_data(session_factory)
    return session_factory


@pytest.fixture
def client(seeded: sessionmaker[Session], clock: FakeClock) -> Iterator[TestClient]:
    app = create_app(Settings(timezone="Europe/Oslo"), session_factory=seeded, clock=clock)
    with TestClient(app, follow_redirects=False) as client:
        yield client


def zone_id(factory: sessionmaker[Session], name: str) -> int:
    with factory() as session:
        return session.scalars(select(Zone.id).where(Zone.name == name)).one()


def on_duty(client: TestClient, zone: int) -> str:
    html = client.get("/roster").text
    match = re.search(rf'data-testid="on-duty-{zone}">(.*?)</p>', html, re.DOTALL)
    assert match, "the zone's on-duty line is not on the page"
    return text_of(match.group(1))


def actions(factory: sessionmaker[Session], action: str) -> list[AuditEntry]:
    with factory() as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.action == action)))


def test_a_coordinator_adds_a_shift_and_the_nurse_is_on_duty_now(
    client: TestClient, seeded: sessionmaker[Session], sign_in: SignIn
) -> None:
    sign_in(client, StaffRole.COORDINATOR)
    orje = zone_id(seeded, "Ørje")
    anne = staff_user(seeded, StaffRole.NURSE, "anne")
    assert on_duty(client, orje) == "Ingen på vakt"

    response = client.post(
        "/roster/patterns",
        data={
            "csrf_token": csrf_of(seeded, client),
            "zone_id": str(orje),
            "user_id": str(anne),
            "weekday": "0",
            "name": "dag",
            "start": "07:30",
            "end": "15:30",
        },
    )

    assert response.status_code == 303
    assert on_duty(client, orje) == "Anne"
    assert on_duty(client, zone_id(seeded, "Mysen")) == "Ingen på vakt"
    week = text_of(
        re.search(
            rf'<table[^>]*id="week-{orje}".*?</table>', client.get("/roster").text, re.DOTALL
        ).group(0)
    )  # type: ignore[union-attr]
    assert "dag Anne 07:30–15:30" in week
    [entry] = actions(seeded, "roster.update")
    assert entry.detail["op"] == "pattern.add" and entry.role == "coordinator"


def test_an_override_swaps_who_is_on_duty_and_removing_it_swaps_back(
    client: TestClient, seeded: sessionmaker[Session], sign_in: SignIn
) -> None:
    orje = zone_id(seeded, "Ørje")
    anne = staff_user(seeded, StaffRole.NURSE, "anne")
    bjorn = staff_user(seeded, StaffRole.NURSE, "bjørn")
    with seeded() as session, session.begin():
        session.add(
            ShiftPattern(
                zone_id=orje, user_id=anne, name="dag", weekday=0, start=time(7), end=time(15)
            )
        )
    sign_in(client, StaffRole.COORDINATOR)
    token = csrf_of(seeded, client)
    assert on_duty(client, orje) == "Anne"

    response = client.post(
        "/roster/overrides",
        data={
            "csrf_token": token,
            "zone_id": str(orje),
            "user_id": str(bjorn),
            "replaces_user_id": str(anne),
            "starts_at": "2026-01-05T12:00",
            "ends_at": "2026-01-05T15:00",
        },
    )

    assert response.status_code == 303
    assert on_duty(client, orje) == "Bjørn"
    with seeded() as session:
        override = session.scalars(select(ShiftOverride)).one()
        assert override.starts_at == datetime(2026, 1, 5, 11, 0, tzinfo=UTC)  # Oslo local
    client.post(f"/roster/overrides/{override.id}/delete", data={"csrf_token": token})
    assert on_duty(client, orje) == "Anne"
    assert sorted(e.detail["op"] for e in actions(seeded, "roster.update")) == [
        "override.add",
        "override.remove",
    ]


def test_invalid_shift_fields_are_named_on_the_form_with_400(
    client: TestClient, seeded: sessionmaker[Session], sign_in: SignIn
) -> None:
    sign_in(client, StaffRole.COORDINATOR)
    orje = zone_id(seeded, "Ørje")

    response = client.post(
        "/roster/patterns",
        data={
            "csrf_token": csrf_of(seeded, client),
            "zone_id": str(orje),
            "user_id": "",
            "weekday": "9",
            "name": "natt",
            "start": "25:00",
            "end": "07:00",
        },
    )

    assert response.status_code == 400
    html = response.text
    summary = text_of(
        re.search(r'id="error-summary">(.*?)</div>', html, re.DOTALL).group(1)
    ).replace(" :", ":")  # type: ignore[union-attr]
    assert "Ansatt: Velg en aktiv ansatt." in summary
    assert "Ukedag: Velg en ukedag." in summary
    assert "Start: Skriv et klokkeslett (tt:mm)." in summary
    assert "Slutt" not in summary  # 07:00 was fine
    assert f'id="pattern-{orje}-start" name="start" value="25:00" aria-invalid="true"' in html
    assert '<details class="form-panel" open>' in html
    with seeded() as session:
        assert session.scalars(select(ShiftPattern)).all() == []


def test_an_override_that_ends_before_it_starts_is_refused(
    client: TestClient, seeded: sessionmaker[Session], sign_in: SignIn
) -> None:
    sign_in(client, StaffRole.COORDINATOR)
    anne = staff_user(seeded, StaffRole.NURSE, "anne")

    response = client.post(
        "/roster/overrides",
        data={
            "csrf_token": csrf_of(seeded, client),
            "zone_id": str(zone_id(seeded, "Ørje")),
            "user_id": str(anne),
            "replaces_user_id": str(anne),
            "starts_at": "2026-01-05T15:00",
            "ends_at": "2026-01-05T12:00",
        },
        params={"lang": "en"},
    )

    assert response.status_code == 400
    assert "The end must come after the start." in response.text
    assert "A person cannot replace themselves." in response.text
    with seeded() as session:
        assert session.scalars(select(ShiftOverride)).all() == []


def test_posts_without_the_csrf_token_are_refused(
    client: TestClient, seeded: sessionmaker[Session], sign_in: SignIn
) -> None:
    sign_in(client, StaffRole.COORDINATOR)
    kari, _ = resident_ids(seeded)
    anne = staff_user(seeded, StaffRole.NURSE, "anne")
    shift = {
        "zone_id": str(zone_id(seeded, "Ørje")),
        "user_id": str(anne),
        "weekday": "0",
        "name": "dag",
        "start": "07:00",
        "end": "15:00",
    }

    assert client.post("/roster/patterns", data=shift).status_code == 403
    assert (
        client.post("/roster/patterns", data={**shift, "csrf_token": "forged"}).status_code == 403
    )
    assert client.post("/policies", data={"name": "x"}).status_code == 403
    assert client.post(f"/residents/{kari}/policy", data={"policy_id": ""}).status_code == 403
    with seeded() as session:
        assert session.scalars(select(ShiftPattern)).all() == []


def test_a_nurse_may_look_at_the_roster_but_not_change_it(
    client: TestClient, seeded: sessionmaker[Session], sign_in: SignIn
) -> None:
    sign_in(client, StaffRole.NURSE)

    page = client.get("/roster")
    response = client.post(
        "/roster/patterns",
        data={"csrf_token": csrf_of(seeded, client), "zone_id": "1", "user_id": "1"},
    )

    assert page.status_code == 200 and "Legg til fast vakt" not in page.text
    assert response.status_code == 403


def test_an_installer_may_not_see_the_roster(client: TestClient, sign_in: SignIn) -> None:
    sign_in(client, StaffRole.INSTALLER)
    assert client.get("/roster").status_code == 403
    assert client.get("/policies").status_code == 403


def test_the_default_policies_are_listed_with_their_steps(
    client: TestClient, sign_in: SignIn
) -> None:
    sign_in(client, StaffRole.COORDINATOR)

    html = client.get("/policies").text

    assert "Default red" in html and "Default yellow" in html and "Default green" in html
    assert "standard for rød" in html
    assert "på vakt i sonen" in html
    # Nobody is on duty in the seeded zones: the page warns, without refusing anything.
    assert "is nobody at the moment" in html


def _default_red(factory: sessionmaker[Session]) -> EscalationPolicy:
    with factory() as session, session.begin():
        ensure_default_policies(session, T0)
    with factory() as session:
        return session.scalars(
            select(EscalationPolicy).where(EscalationPolicy.default_for_severity == "red")
        ).one()


def test_a_policy_that_reaches_nobody_is_refused_with_its_reason(
    client: TestClient, seeded: sessionmaker[Session], sign_in: SignIn
) -> None:
    red = _default_red(seeded)
    sign_in(client, StaffRole.COORDINATOR)
    token = csrf_of(seeded, client)

    no_steps = client.post(
        f"/policies/{red.id}",
        data={"csrf_token": token, "name": red.name, "repeat_rounds": "3", "steps": "[]"},
    )
    relatives_first = client.post(
        f"/policies/{red.id}",
        data={
            "csrf_token": token,
            "name": red.name,
            "repeat_rounds": "3",
            "steps": json.dumps(
                [{"wait_s": 60, "targets": [{"kind": "acting_relatives"}], "channels": ["sms"]}]
            ),
        },
    )
    bad_json = client.post(
        f"/policies/{red.id}",
        data={"csrf_token": token, "name": red.name, "repeat_rounds": "3", "steps": "[{"},
    )

    assert no_steps.status_code == 400
    assert "has no steps: it would reach nobody" in no_steps.text
    assert f'id="policy-{red.id}-steps-error"' in no_steps.text
    assert 'name="steps" rows="12"' in no_steps.text and ">[]</textarea>" in no_steps.text
    assert relatives_first.status_code == 400
    assert "the first step must reach staff" in relatives_first.text
    assert bad_json.status_code == 400 and "JSON:" in bad_json.text
    with seeded() as session:
        stored = session.get(EscalationPolicy, red.id)
        assert stored is not None and stored.steps == red.steps
    assert actions(seeded, "policy.update") == []


def test_a_valid_policy_edit_is_saved_and_audited(
    client: TestClient, seeded: sessionmaker[Session], sign_in: SignIn
) -> None:
    red = _default_red(seeded)
    sign_in(client, StaffRole.COORDINATOR)
    steps = [{"wait_s": 60, "targets": [{"kind": "on_duty"}], "channels": ["portal", "sms"]}]

    response = client.post(
        f"/policies/{red.id}",
        data={
            "csrf_token": csrf_of(seeded, client),
            "name": "Rød, rask",
            "repeat_rounds": "2",
            "steps": json.dumps(steps),
        },
    )

    assert response.status_code == 303
    with seeded() as session:
        stored = session.get(EscalationPolicy, red.id)
        assert stored is not None
        assert (stored.name, stored.repeat_rounds) == ("Rød, rask", 2)
        assert stored.steps == [
            {**steps[0], "targets": [{"kind": "on_duty", "role": None, "user_ids": []}]}
        ]
    [entry] = actions(seeded, "policy.update")
    assert entry.detail["previous"]["name"] == "Default red"


def test_a_resident_gets_their_own_policy_and_back_to_the_default(
    client: TestClient, seeded: sessionmaker[Session], sign_in: SignIn
) -> None:
    red = _default_red(seeded)
    kari, _ = resident_ids(seeded)
    sign_in(client, StaffRole.COORDINATOR)
    token = csrf_of(seeded, client)

    response = client.post(
        f"/residents/{kari}/policy", data={"csrf_token": token, "policy_id": str(red.id)}
    )
    unknown = client.post(
        f"/residents/{kari}/policy", data={"csrf_token": token, "policy_id": "9999"}
    )

    assert response.status_code == 303
    assert unknown.status_code == 400 and "Ukjent varslingsplan." in unknown.text
    with seeded() as session:
        resident = session.get(Resident, kari)
        assert resident is not None and resident.escalation_policy_id == red.id
    client.post(f"/residents/{kari}/policy", data={"csrf_token": token, "policy_id": ""})
    with seeded() as session:
        resident = session.get(Resident, kari)
        assert resident is not None and resident.escalation_policy_id is None
    entries = actions(seeded, "policy.update")
    assert [(e.resident_id, e.detail["to"]) for e in entries] == [(kari, red.id), (kari, None)]


def test_a_nurse_may_not_change_a_resident_s_policy(
    client: TestClient, seeded: sessionmaker[Session], sign_in: SignIn
) -> None:
    kari, _ = resident_ids(seeded)
    sign_in(client, StaffRole.NURSE)

    response = client.post(
        f"/residents/{kari}/policy",
        data={"csrf_token": csrf_of(seeded, client), "policy_id": ""},
    )

    assert response.status_code == 403
    assert 'name="policy_id"' not in client.get(f"/residents/{kari}").text
