"""Kari's rule settings on her profile: a coordinator changes them, the rules use them at once."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from care_portal.app import create_app
from care_portal.i18n import Translator, load_catalogues
from care_portal.routers.residents import parse_rule_form, rule_form_value
from hub.clock import FakeClock
from hub.config import Settings
from hub.ingest.pipeline import BatchOutcome
from hub.ingest.store import StoredEvent
from hub.rules.config import RuleConfig
from hub.rules.service import RulesService
from hub.rules.timers import ManualTimer
from hub.storage.models import (
    Alarm,
    AuditEntry,
    Device,
    DeviceType,
    Protocol,
    Resident,
    RuleState,
    StaffRole,
)
from tests.care_portal.api_seed import resident_ids
from tests.care_portal.conftest import SignIn, csrf_of
from tests.care_portal.seed import BUTTON, HOME, T0, seed_portal_data
from tests.care_portal.test_app import text_of

MOTION = "motion-living"
FIELD_ERROR = r'<p class="field__error" id="rule-([a-z-]+)-error">([^<]+)</p>'


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def seeded(session_factory: sessionmaker[Session]) -> sessionmaker[Session]:
    """The portal's care story, plus a motion sensor in Kari's living room."""
    seed_portal_data(session_factory)
    with session_factory() as session, session.begin():
        session.add(
            Device(
                id=MOTION,
                home_id=HOME,
                type=DeviceType.MOTION_SENSOR,
                protocol=Protocol.NATIVE,
                supervision_interval_s=24 * 3600,
                online=True,
                last_seen_at=T0,
                created_at=T0,
            )
        )
    return session_factory


@pytest.fixture
def client(seeded: sessionmaker[Session], clock: FakeClock) -> Iterator[TestClient]:
    app = create_app(Settings(timezone="Europe/Oslo"), session_factory=seeded, clock=clock)
    with TestClient(app, follow_redirects=False) as client:
        yield client


def form_of(html: str) -> dict[str, str]:
    """What the browser would post from the profile's rule form as it is shown."""
    match = re.search(r'<form[^>]*action="/residents/\d+/rules".*?</form>', html, re.DOTALL)
    assert match, "the profile has no rule settings form"
    form = match.group(0)
    values: dict[str, str] = {}
    for tag in re.findall(r"<input[^>]*>", form):
        name = re.search(r'name="([^"]+)"', tag)
        value = re.search(r'value="([^"]*)"', tag)
        if name is None or 'type="hidden"' in tag:
            continue
        if 'type="checkbox"' in tag:
            if " checked" in tag:
                values[name.group(1)] = "on"
            continue
        values[name.group(1)] = value.group(1) if value else ""
    for name, body in re.findall(r'<select[^>]*name="([^"]+)"[^>]*>(.*?)</select>', form, re.S):
        chosen = re.search(r'<option value="([^"]+)" selected', body)
        assert chosen, f"{name} has no selected option"
        values[name] = chosen.group(1)
    return values


def rule_audits(factory: sessionmaker[Session]) -> list[AuditEntry]:
    with factory() as session:
        query = select(AuditEntry).where(AuditEntry.action == "resident.rules")
        return list(session.scalars(query.order_by(AuditEntry.id)))


def stored_overrides(factory: sessionmaker[Session], resident_id: int) -> object:
    with factory() as session:
        return session.scalars(select(Resident.rule_config).where(Resident.id == resident_id)).one()


def test_a_coordinator_changes_kari_s_rules_and_only_the_changes_are_stored(
    client: TestClient, seeded: sessionmaker[Session], sign_in: SignIn
) -> None:
    sign_in(client, StaffRole.COORDINATOR)
    kari, _ = resident_ids(seeded)
    page = client.get(f"/residents/{kari}")
    form = form_of(page.text)
    assert form["inactivity_stopwatch_s"] == "43200" and form["night_start"] == "22:00"
    assert form["fall_enabled"] == "on" and form["door_severity"] == "yellow"

    form.update(inactivity_stopwatch_s="3600", night_start="23:30", door_severity="red")
    form.pop("bathroom_enabled")  # the box unticked: browsers send nothing for it
    form["fall_min_confidence"] = "0,8"  # a Norwegian decimal comma
    saved = client.post(
        f"/residents/{kari}/rules", data={**form, "csrf_token": csrf_of(seeded, client)}
    )

    assert saved.status_code == 303
    assert saved.headers["location"] == f"/residents/{kari}?saved=rules#rules"
    expected = {
        "inactivity_stopwatch_s": 3600,
        "night_start": "23:30:00",
        "door_severity": "red",
        "bathroom_enabled": False,
        "fall_min_confidence": 0.8,
    }
    assert stored_overrides(seeded, kari) == expected
    [entry] = rule_audits(seeded)
    assert entry.username == "test-coordinator" and entry.resident_id == kari
    assert entry.detail == {"from": {}, "to": expected}

    profile = client.get(saved.headers["location"]).text
    assert "Regelinnstillingene er lagret." in profile
    table = re.search(r'<table[^>]*id="rule-settings".*?</table>', profile, re.DOTALL)
    assert table is not None
    rows = [text_of(row) for row in re.findall(r"<tr.*?</tr>", table.group(0), re.DOTALL)]
    assert text_of(table.group(0)).count("tilpasset") == len(expected)
    assert "Natt fra 23:30 tilpasset" in rows
    assert form_of(profile)["inactivity_stopwatch_s"] == "3600"
    assert "bathroom_enabled" not in form_of(profile)

    # Back to the defaults: nothing stored, and the change is audited too.
    reset = client.post(
        f"/residents/{kari}/rules",
        data={"action": "reset", "csrf_token": csrf_of(seeded, client)},
    )
    assert reset.status_code == 303
    assert stored_overrides(seeded, kari) is None
    assert rule_audits(seeded)[-1].detail == {"from": expected, "to": {}}


def test_invalid_settings_come_back_on_the_form_and_nothing_is_stored(
    client: TestClient, seeded: sessionmaker[Session], sign_in: SignIn
) -> None:
    sign_in(client, StaffRole.ADMIN)
    kari, _ = resident_ids(seeded)
    form = form_of(client.get(f"/residents/{kari}").text)
    form.update(
        bathroom_max_s="30",  # under the 60 s minimum
        low_battery_pct="ti",
        night_end="25:00",
        fall_min_confidence="1.5",
        tamper_severity="purple",
    )

    response = client.post(
        f"/residents/{kari}/rules", data={**form, "csrf_token": csrf_of(seeded, client)}
    )

    assert response.status_code == 400
    html = response.text
    assert 'role="alert" id="rules-errors"' in html
    errors = dict(re.findall(FIELD_ERROR, html))
    assert errors == {
        "low-battery-pct": "Skriv et heltall.",
        "night-end": "Skriv et klokkeslett som TT:MM.",
        "tamper-severity": "Velg en hastegrad fra listen.",
    }
    assert 'value="ti"' in html and 'value="30"' in html  # what was typed is kept
    assert 'id="rule-low-battery-pct" name="low_battery_pct" value="ti" aria-invalid="true"' in html
    assert stored_overrides(seeded, kari) is None
    assert rule_audits(seeded) == []

    # Well-formed but out of range: the model's limits, in words.
    form.update(low_battery_pct="15", night_end="06:00", tamper_severity="yellow")
    second = client.post(
        f"/residents/{kari}/rules", data={**form, "csrf_token": csrf_of(seeded, client)}
    )
    assert second.status_code == 400
    errors = dict(re.findall(FIELD_ERROR, second.text))
    assert errors == {
        "bathroom-max-s": "Må være minst 60.",
        "fall-min-confidence": "Kan være høyst 1.",
    }
    assert stored_overrides(seeded, kari) is None


def test_nurses_see_the_settings_but_may_not_change_them(
    client: TestClient, seeded: sessionmaker[Session], sign_in: SignIn
) -> None:
    sign_in(client, StaffRole.NURSE)
    kari, _ = resident_ids(seeded)
    page = client.get(f"/residents/{kari}")
    assert 'id="rule-settings"' in page.text
    assert f'action="/residents/{kari}/rules"' not in page.text

    refused = client.post(
        f"/residents/{kari}/rules",
        data={"inactivity_stopwatch_s": "60", "csrf_token": csrf_of(seeded, client)},
    )

    assert refused.status_code == 403
    assert stored_overrides(seeded, kari) is None


def test_a_rule_post_without_the_csrf_token_is_refused(
    client: TestClient, seeded: sessionmaker[Session], sign_in: SignIn
) -> None:
    sign_in(client, StaffRole.COORDINATOR)
    kari, _ = resident_ids(seeded)
    form = form_of(client.get(f"/residents/{kari}").text)

    response = client.post(f"/residents/{kari}/rules", data={**form, "fall_enabled": ""})

    assert response.status_code == 403
    assert stored_overrides(seeded, kari) is None


def motion(rules: RulesService, factory: sessionmaker[Session], clock: FakeClock) -> None:
    """Kari walks through the living room now: the event as the ingest hands it to the rules."""
    event = StoredEvent(
        id=1,
        device_id=MOTION,
        home_id=HOME,
        kind="motion",
        event_ts=clock.now(),
        received_at=clock.now(),
        seq=1,
        data={"motion": True},
    )
    outcome = BatchOutcome(
        stored=[event], status_changes=[], duplicates=0, rejected=0, discovered=0, ignored=0
    )
    with factory() as session, session.begin():
        rules.handle(session, outcome)


def inactivity_alarms(factory: sessionmaker[Session]) -> list[str]:
    with factory() as session:
        query = select(Alarm.summary).where(Alarm.type == "inactivity").order_by(Alarm.id)
        return list(session.scalars(query))


def test_a_shorter_inactivity_limit_reaches_the_stopwatch_already_running(
    client: TestClient, seeded: sessionmaker[Session], sign_in: SignIn, clock: FakeClock
) -> None:
    """Kari moved at 13:00; at 13:30 the coordinator cuts her limit from 12 h to 1 h; the hub's
    next due run recomputes her stopwatch, and at 14:01 the inactivity alarm is raised."""
    rules = RulesService(seeded, clock, ManualTimer(), timezone="Europe/Oslo")
    kari, _ = resident_ids(seeded)
    with seeded() as session, session.begin():
        # Supervision off and the button out of test mode: the stopwatch is the only timer.
        session.get_one(Resident, kari).rule_config = {"supervision_enabled": False}
        session.get_one(Device, BUTTON).test_mode_until = None
    motion(rules, seeded, clock)
    with seeded() as session:
        due_before = session.scalars(
            select(RuleState.next_due_at).where(RuleState.resident_id == kari)
        ).one()
    assert due_before == T0 + timedelta(hours=12, minutes=-5)  # the pre-alarm, 5 min before

    clock.advance(timedelta(minutes=30))
    sign_in(client, StaffRole.COORDINATOR)
    form = form_of(client.get(f"/residents/{kari}").text)
    form["inactivity_stopwatch_s"] = "3600"
    saved = client.post(
        f"/residents/{kari}/rules", data={**form, "csrf_token": csrf_of(seeded, client)}
    )
    assert saved.status_code == 303
    with seeded() as session:
        assert (
            session.scalars(
                select(RuleState.next_due_at).where(RuleState.resident_id == kari)
            ).one()
            == clock.now()
        )  # due now: the next run looks again with the new settings

    assert rules.run_due() == 1
    assert inactivity_alarms(seeded) == []
    clock.advance(timedelta(minutes=31))  # 14:01, an hour after Kari's last movement
    rules.run_due()
    assert inactivity_alarms(seeded) == ["No activity for 1 h (since 13:00)"]


def test_the_form_parser_keeps_defaults_out_of_the_overrides() -> None:
    translator = Translator("en", load_catalogues()["en"])
    defaults = RuleConfig()
    form = {name: rule_form_value(getattr(defaults, name)) for name in RuleConfig.model_fields}

    assert parse_rule_form(form, translator) == ({}, {})
    form["night_start"] = "07:00"
    form["fall_min_confidence"] = ""  # empty: no minimum (the default)
    assert parse_rule_form(form, translator) == ({"night_start": "07:00:00"}, {})
    form["button_cancel_window_s"] = "-1"
    assert parse_rule_form(form, translator) == (
        None,
        {"button_cancel_window_s": "Must be at least 0."},
    )
