"""The installer's pages: an installer registers, pairs, moves, replaces and retires devices,
runs test mode and a walk test; nurses only look; every change is audited and in the history."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from care_portal.app import create_app
from care_portal.routers.installer import BROKER_AUTH_STATE, PortalBrokerSync
from hub.broker_auth import BrokerAuthPaths, verify_mosquitto_hash
from hub.clock import FakeClock
from hub.config import MqttSettings, Settings
from hub.storage.models import (
    AuditEntry,
    Device,
    DeviceCredential,
    DeviceHistoryEntry,
    DiscoveredDevice,
    StaffRole,
    WalkTest,
)
from tests.care_portal.conftest import SignIn, csrf_of
from tests.care_portal.seed import (
    BUTTON,
    DOOR_CONTACT,
    FALL_SENSOR,
    HOME,
    QUIET_HOME,
    RESIDENT_LABEL,
    T0,
    add_event,
    seed_portal_data,
)
from tests.care_portal.test_app import text_of

DISCOVERED = "0x00158d0001a2b3c4"  # a Zigbee motion sensor the seed's hub has heard from
HUB_MQTT = MqttSettings(username="carehub-hub", password="hub-secret")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def seeded(session_factory: sessionmaker[Session]) -> sessionmaker[Session]:
    seed_portal_data(session_factory)
    return session_factory


def _client(
    seeded: sessionmaker[Session],
    clock: FakeClock,
    *,
    broker: PortalBrokerSync | None = None,
    mqtt: MqttSettings | None = None,
) -> TestClient:
    settings = Settings(timezone="Europe/Oslo", mqtt=mqtt or MqttSettings())
    app = create_app(settings, session_factory=seeded, clock=clock)
    if broker is not None:  # what a runner next to the broker would set
        setattr(app.state, BROKER_AUTH_STATE, broker)
    return TestClient(app, follow_redirects=False)


@pytest.fixture
def client(seeded: sessionmaker[Session], clock: FakeClock) -> Iterator[TestClient]:
    with _client(seeded, clock) as client:
        yield client


@pytest.fixture
def installer(client: TestClient, seeded: sessionmaker[Session], sign_in: SignIn) -> str:
    """Sign the client in as an installer; returns the session's CSRF token."""
    sign_in(client, StaffRole.INSTALLER)
    return csrf_of(seeded, client)


def _audit(factory: sessionmaker[Session], action: str) -> list[AuditEntry]:
    with factory() as session:
        return list(
            session.scalars(
                select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)
            )
        )


def _history(factory: sessionmaker[Session], device_id: str) -> list[tuple[str, str]]:
    with factory() as session:
        rows = session.scalars(
            select(DeviceHistoryEntry)
            .where(DeviceHistoryEntry.device_id == device_id)
            .order_by(DeviceHistoryEntry.id)
        )
        return [(row.action, row.actor) for row in rows]


def _testid(html: str, testid: str) -> str:
    match = re.search(rf'data-testid="{testid}"[^>]*>(.*?)<', html, re.DOTALL)
    assert match, f"{testid} is not on the page"
    return match.group(1).strip()


def _register(client: TestClient, csrf: str, **fields: str) -> httpx.Response:
    data = {
        "csrf_token": csrf,
        "device_id": "BTN-0042",
        "type": "alarm_button",
        "protocol": "native",
        "z2m_friendly_name": "",
        "room": "Stue",
        "room_kind": "living",
        **fields,
    }
    response: httpx.Response = client.post(f"/installer/homes/{HOME}/devices", data=data)
    return response


# --- who may do what ----------------------------------------------------------------------------


def test_a_nurse_sees_device_health_but_may_change_nothing(
    client: TestClient, seeded: sessionmaker[Session], sign_in: SignIn
) -> None:
    sign_in(client, StaffRole.NURSE)
    csrf = csrf_of(seeded, client)

    listing = client.get("/installer")
    assert listing.status_code == 200
    assert 'data-testid="view-only"' in listing.text
    assert "/installer/pair/" not in listing.text  # no pair buttons for her
    home = client.get(f"/installer/homes/{HOME}")
    row = re.search(rf'<tr id="installer-device-{FALL_SENSOR}".*?</tr>', home.text, re.DOTALL)
    assert row and "87 %" in text_of(row.group(0)) and "tilkoblet" in text_of(row.group(0))
    assert "Registrer en enhet" not in home.text

    assert _register(client, csrf).status_code == 403
    assert (
        client.post(
            f"/installer/devices/{FALL_SENSOR}/retire", data={"csrf_token": csrf, "reason": "x"}
        ).status_code
        == 403
    )
    with seeded() as session:
        assert session.get(Device, "BTN-0042") is None
        assert session.get(Device, FALL_SENSOR).retired_at is None  # type: ignore[union-attr]


def test_pages_show_no_residents_and_signed_out_browsers_go_to_login(
    client: TestClient, installer: str
) -> None:
    for path in ("/installer", f"/installer/homes/{HOME}", f"/installer/devices/{FALL_SENSOR}"):
        page = client.get(path)
        assert page.status_code == 200, path
        assert RESIDENT_LABEL not in page.text and "Kari" not in page.text
    nav = client.get("/installer").text
    assert 'href="/installer" aria-current="page"' in nav
    client.cookies.clear()
    assert client.get("/installer").headers["location"].startswith("/login")


def test_a_form_without_the_csrf_token_changes_nothing(client: TestClient, installer: str) -> None:
    response = _register(client, "forged")
    assert response.status_code == 403
    response = client.post(f"/installer/homes/{HOME}/test-mode", data={"minutes": "30"})
    assert response.status_code == 403
    assert "BTN-0042" not in client.get(f"/installer/homes/{HOME}").text


# --- register -----------------------------------------------------------------------------------


def test_registering_a_native_device_shows_its_password_once_and_keeps_only_a_hash(
    client: TestClient, installer: str, seeded: sessionmaker[Session]
) -> None:
    result = _register(client, installer, hmac="1")

    assert result.status_code == 200
    html = result.text
    assert result.headers["cache-control"] == "no-store"
    password = _testid(html, "mqtt-password")
    key = _testid(html, "hmac-key")
    assert _testid(html, "mqtt-username") == "BTN-0042"
    assert f"carehub/v1/{HOME}/BTN-0042/event" in html
    with seeded() as session:
        credential = session.get(DeviceCredential, "BTN-0042")
        assert credential is not None and credential.hmac_key == key
        assert password not in credential.password_hash
        assert verify_mosquitto_hash(password, credential.password_hash)
        device = session.get(Device, "BTN-0042")
        assert device is not None and device.room is not None and device.room.kind == "living"
    # The broker is not managed by this portal: it says so.
    assert 'data-sync="not_configured"' in html and "carehub broker sync" in html

    for path in ("/installer/devices/BTN-0042", f"/installer/homes/{HOME}"):
        assert password not in client.get(path).text
    assert _history(seeded, "BTN-0042") == [("registered", "test-installer")]
    [entry] = _audit(seeded, "device.register")
    assert entry.role == "installer" and entry.detail["device_id"] == "BTN-0042"
    assert password not in str(entry.detail) and key not in str(entry.detail)


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"device_id": ""}, "device_id", "Oppgi en id"),
        ({"device_id": "has space"}, "device_id", "Oppgi en id"),
        ({"device_id": FALL_SENSOR}, "device_id", f"Enheten {FALL_SENSOR} finnes allerede"),
        ({"type": "toaster"}, "type", "Velg en enhetstype"),
        ({"protocol": "zigbee2mqtt"}, "z2m_friendly_name", "Oppgi det vennlige navnet"),
        ({"z2m_friendly_name": "hall"}, "z2m_friendly_name", "Bare Zigbee2MQTT-enheter"),
        ({"room": "  "}, "room", "Oppgi et romnavn"),
    ],
)
def test_a_refused_registration_comes_back_on_the_form_with_its_values(
    client: TestClient,
    installer: str,
    seeded: sessionmaker[Session],
    fields: dict[str, str],
    field: str,
    message: str,
) -> None:
    response = _register(client, installer, **fields)

    assert response.status_code == 400
    html = response.text
    error = re.search(
        rf'<p class="field__error" id="register-{HOME}-[a-z0-9]+-error">(.*?)</p>', html
    )
    assert error and message in error.group(1), html[:2000]
    assert 'id="error-summary"' in html and 'aria-invalid="true"' in html
    assert '<details class="form-panel" id="register-panel" open>' in html
    assert 'value="Stue"' in html or field == "room"  # what she typed is still there
    with seeded() as session:
        assert session.scalars(select(DeviceCredential)).all() == []
    assert _audit(seeded, "device.register") == []


# --- pair ---------------------------------------------------------------------------------------


def test_a_discovered_zigbee_device_is_paired_from_the_list_in_one_click(
    client: TestClient, installer: str, seeded: sessionmaker[Session]
) -> None:
    listing = client.get("/installer").text
    with seeded() as session:
        found = session.scalars(select(DiscoveredDevice)).one()
    assert f'href="/installer/pair/{found.id}"' in listing
    form = client.get(f"/installer/pair/{found.id}").text
    # Filled in from what the device said: a motion sensor (its last message was motion).
    assert '<option value="motion_sensor" selected>' in form
    assert f"zigbee2mqtt/{DISCOVERED}" in form

    no_home = client.post(
        f"/installer/pair/{found.id}",
        data={"csrf_token": installer, "type": "motion_sensor", "room": "Gang", "home_id": ""},
    )
    assert no_home.status_code == 400 and "Velg et hjem" in no_home.text

    result = client.post(
        f"/installer/pair/{found.id}",
        data={
            "csrf_token": installer,
            "home_id": QUIET_HOME,
            "type": "motion_sensor",
            "device_id": "ola-hall-motion",
            "room": "Gang",
            "room_kind": "entrance",
        },
    )
    assert result.status_code == 200, result.text
    assert 'data-testid="no-login"' in result.text and "mqtt-password" not in result.text
    assert 'data-sync="not_needed"' in result.text
    with seeded() as session:
        device = session.get(Device, "ola-hall-motion")
        assert device is not None and device.home_id == QUIET_HOME
        assert device.z2m_friendly_name == DISCOVERED
        assert session.scalars(select(DiscoveredDevice)).all() == []
    assert 'data-testid="no-discovered"' in client.get("/installer").text
    assert _history(seeded, "ola-hall-motion") == [("paired", "test-installer")]
    [entry] = _audit(seeded, "device.pair")
    assert entry.detail["discovered"] == DISCOVERED


def test_a_native_discovered_device_pairs_under_its_own_id_with_a_login(
    client: TestClient, installer: str, seeded: sessionmaker[Session]
) -> None:
    with seeded() as session, session.begin():
        found = DiscoveredDevice(
            protocol="native",
            identifier="DOOR-17",
            home_hint=HOME,
            last_topic=f"carehub/v1/{HOME}/DOOR-17/event",
            first_seen_at=T0,
            last_seen_at=T0,
            message_count=1,
            last_kind="door",
            last_payload="{}",
        )
        session.add(found)
        session.flush()
        found_id = found.id
    form = client.get(f"/installer/pair/{found_id}").text
    assert '<option value="door_contact" selected>' in form
    assert f'<option value="{HOME}" selected>' in form

    result = client.post(
        f"/installer/pair/{found_id}",
        data={
            "csrf_token": installer,
            "home_id": HOME,
            "type": "door_contact",
            "room": "Gang",
            "room_kind": "entrance",
        },
    )
    assert result.status_code == 200
    assert _testid(result.text, "mqtt-username") == "DOOR-17"
    assert _testid(result.text, "mqtt-password")


# --- move, replace, retire ----------------------------------------------------------------------


def test_move_replace_and_retire_through_the_forms_keep_the_history(
    client: TestClient, installer: str, seeded: sessionmaker[Session]
) -> None:
    moved = client.post(
        f"/installer/devices/{FALL_SENSOR}/move",
        data={"csrf_token": installer, "home_id": HOME, "room": "Soverom", "room_kind": "bedroom"},
    )
    assert moved.status_code == 200
    assert f"{FALL_SENSOR} er nå i hjem {HOME}, rom Soverom" in text_of(moved.text)

    replaced = client.post(
        f"/installer/devices/{FALL_SENSOR}/replace",
        data={"csrf_token": installer, "new_id": "fall-2002"},
    )
    assert replaced.status_code == 200
    assert _testid(replaced.text, "mqtt-username") == "fall-2002"
    with seeded() as session:
        old = session.get(Device, FALL_SENSOR)
        new = session.get(Device, "fall-2002")
        assert old is not None and old.retired_at is not None
        assert new is not None and new.room is not None and new.room.name == "Soverom"

    refused = client.post(
        "/installer/devices/fall-2002/retire", data={"csrf_token": installer, "reason": ""}
    )
    assert refused.status_code == 400 and "Oppgi årsaken" in refused.text
    retired = client.post(
        "/installer/devices/fall-2002/retire",
        data={"csrf_token": installer, "reason": "resident moved out"},
    )
    assert retired.status_code == 200 and "resident moved out" in retired.text
    again = client.post(
        "/installer/devices/fall-2002/retire", data={"csrf_token": installer, "reason": "again"}
    )
    assert again.status_code == 400 and "Huben avviste" in again.text

    assert [a for a, _ in _history(seeded, FALL_SENSOR)] == ["moved", "retired", "replaced"]
    assert [a for a, _ in _history(seeded, "fall-2002")] == ["registered", "retired"]
    page = client.get(f"/installer/devices/{FALL_SENSOR}").text
    table = re.search(r'<table[^>]*id="device-history".*?</table>', page, re.DOTALL)
    assert table, "no history table"
    history = text_of(table.group(0))
    assert "byttet ut" in history and "replaced_by fall-2002" in history and "flyttet" in history
    assert 'data-testid="device-retired"' in page and "Fase ut" not in page.split("<h2")[2]
    assert [e.detail["device_id"] for e in _audit(seeded, "device.move")] == [FALL_SENSOR]
    assert [e.detail["replaced_by"] for e in _audit(seeded, "device.replace")] == ["fall-2002"]
    assert [e.detail["reason"] for e in _audit(seeded, "device.retire")] == ["resident moved out"]


def test_a_move_to_a_home_that_does_not_exist_is_refused_on_the_form(
    client: TestClient, installer: str
) -> None:
    response = client.post(
        f"/installer/devices/{FALL_SENSOR}/move",
        data={"csrf_token": installer, "home_id": "h-nowhere", "room": "Bad"},
    )
    assert response.status_code == 400
    assert '<details class="form-panel" id="move-panel" open>' in response.text
    assert "Velg et hjem" in response.text


# --- the broker's files -------------------------------------------------------------------------


def test_with_the_broker_configured_a_registration_writes_its_login_and_acl(
    seeded: sessionmaker[Session], clock: FakeClock, sign_in: SignIn, tmp_path: Path
) -> None:
    paths = BrokerAuthPaths(tmp_path / "carehub.passwd", tmp_path / "carehub.acl")
    with _client(seeded, clock, broker=PortalBrokerSync(paths), mqtt=HUB_MQTT) as client:
        sign_in(client, StaffRole.INSTALLER)
        result = _register(client, csrf_of(seeded, client))
        assert 'data-sync="synced"' in result.text
        password = _testid(result.text, "mqtt-password")
        logins = dict(line.split(":", 1) for line in paths.password_file.read_text().splitlines())
        assert set(logins) == {"carehub-hub", "BTN-0042"}
        assert verify_mosquitto_hash(password, logins["BTN-0042"])
        acl = paths.acl_file.read_text()
        assert f"user BTN-0042\ntopic write carehub/v1/{HOME}/BTN-0042/event" in acl

        retired = client.post(
            "/installer/devices/BTN-0042/retire",
            data={"csrf_token": csrf_of(seeded, client), "reason": "broken"},
        )
        assert 'data-sync="synced"' in retired.text
        assert "BTN-0042" not in paths.password_file.read_text()


def test_when_the_broker_files_cannot_be_written_the_page_says_so(
    seeded: sessionmaker[Session], clock: FakeClock, sign_in: SignIn, tmp_path: Path
) -> None:
    paths = BrokerAuthPaths(tmp_path / "carehub.passwd", tmp_path / "carehub.acl")
    # No hub login configured: the sync must refuse rather than lock the hub out.
    with _client(seeded, clock, broker=PortalBrokerSync(paths)) as client:
        sign_in(client, StaffRole.INSTALLER)
        result = _register(client, csrf_of(seeded, client))
    assert result.status_code == 200
    assert 'data-sync="failed"' in result.text
    assert "mqtt.username" in result.text
    assert not paths.password_file.exists()
    with seeded() as session:
        assert session.get(Device, "BTN-0042") is not None  # the change itself is kept


# --- test mode and the walk test ----------------------------------------------------------------


def test_test_mode_for_a_home_shows_on_its_page_and_ends_with_zero_minutes(
    client: TestClient, installer: str, seeded: sessionmaker[Session]
) -> None:
    bad = client.post(
        f"/installer/homes/{HOME}/test-mode", data={"csrf_token": installer, "minutes": "-5"}
    )
    assert bad.status_code == 400 and "Oppgi et helt antall minutter" in bad.text

    on = client.post(
        f"/installer/homes/{HOME}/test-mode", data={"csrf_token": installer, "minutes": "15"}
    )
    assert on.status_code == 303
    page = client.get(on.headers["location"]).text
    assert 'data-testid="home-test-mode"' in page
    door = re.search(rf'<tr id="installer-device-{DOOR_CONTACT}".*?</tr>', page, re.DOTALL)
    assert door and "13:15" in text_of(door.group(0))  # 12:15 UTC is 13:15 in Oslo
    listing = client.get("/installer").text
    row = re.search(rf'<tr id="installer-home-{HOME}".*?</tr>', listing, re.DOTALL)
    assert row and 'badge--test">3<' in row.group(0)

    off = client.post(
        f"/installer/devices/{BUTTON}/test-mode", data={"csrf_token": installer, "minutes": "0"}
    )
    assert off.status_code == 303
    with seeded() as session:
        assert session.get(Device, BUTTON).test_mode_until is None  # type: ignore[union-attr]
        assert session.get(Device, DOOR_CONTACT).test_mode_until == T0 + timedelta(minutes=15)  # type: ignore[union-attr]
    assert len(_audit(seeded, "device.test_mode")) == 2


def test_a_walk_test_ticks_items_from_events_and_records_who_tested(
    client: TestClient, installer: str, seeded: sessionmaker[Session], clock: FakeClock
) -> None:
    started = client.post(
        f"/installer/homes/{HOME}/walk-tests", data={"csrf_token": installer, "minutes": "30"}
    )
    assert started.status_code == 303
    walk_url = started.headers["location"]
    page = client.get(walk_url).text
    assert 'hx-trigger="every 2s"' in page
    assert f'id="item-{BUTTON}-press" class="checklist__item" data-done="false"' in page

    clock.advance(timedelta(minutes=2))
    with seeded() as session, session.begin():
        add_event(session, BUTTON, "button", {"action": "press"}, clock.now())
        add_event(session, DOOR_CONTACT, "door", {"open": True}, clock.now())
    checklist = client.get(walk_url + "/checklist").text
    assert (
        f'id="item-{BUTTON}-press" class="checklist__item checklist__item--done" data-done="true"'
        in checklist
    )
    assert (
        f'id="item-{DOOR_CONTACT}-open" class="checklist__item checklist__item--done"' in checklist
    )
    assert f'id="item-{DOOR_CONTACT}-close" class="checklist__item" data-done="false"' in checklist
    assert "Trykk på alarmknappen" in checklist

    again = client.post(
        f"/installer/homes/{HOME}/walk-tests", data={"csrf_token": installer, "minutes": "30"}
    )
    assert again.status_code == 400 and "still running" in again.text  # one at a time
    clock.advance(timedelta(minutes=1))
    finished = client.post(walk_url + "/finish", data={"csrf_token": installer})
    assert finished.status_code == 303
    record = client.get(walk_url).text
    assert "hx-get" not in record  # no more polling
    assert "Testet av test-installer" in text_of(record)
    with seeded() as session:
        walk = session.scalars(select(WalkTest)).one()
        assert walk.finished_by == "test-installer" and walk.started_by == "test-installer"
        assert walk.results is not None and walk.results["devices"][BUTTON]["complete"] is True
        assert walk.results["devices"][DOOR_CONTACT]["complete"] is False
        assert session.get(Device, BUTTON).test_mode_until is None  # type: ignore[union-attr]
    assert [e.action for e in _audit(seeded, "device.walk_test_start")] == [
        "device.walk_test_start"
    ]
    assert _audit(seeded, "device.walk_test_finish")[0].detail["complete"] is False


def test_every_installer_page_is_translated_into_english(
    client: TestClient, installer: str, seeded: sessionmaker[Session]
) -> None:
    with seeded() as session:
        found = session.scalars(select(DiscoveredDevice.id)).one()
    started = client.post(
        f"/installer/homes/{HOME}/walk-tests", data={"csrf_token": installer, "minutes": "30"}
    )
    pages = {
        "/installer": "Discovered devices",
        f"/installer/homes/{HOME}": "Register a device",
        f"/installer/devices/{FALL_SENSOR}": "History",
        f"/installer/pair/{found}": "Pair the device",
        started.headers["location"]: "Press the alarm button",
    }
    for path, expected in pages.items():
        html = client.get(path, params={"lang": "en"}).text
        assert expected in html, path
        assert not re.search(r">\s*installer\.[a-z_.]+", html), f"untranslated key on {path}"
    result = _register(client, installer, device_id="BTN-7", hmac="1")
    assert "Shown this once" in result.text and "HMAC key (base64)" in result.text


def test_broker_settings_make_the_portal_keep_the_broker_files_and_reload_it(
    seeded: sessionmaker[Session], clock: FakeClock, sign_in: SignIn, tmp_path: Path
) -> None:
    """``[broker]`` in the settings is all a hub beside Mosquitto needs: the portal rewrites
    the files after a change and SIGHUPs the pid it reads from Mosquitto's pid file."""
    import subprocess
    import sys

    from hub.config import BrokerSettings

    stand_in = subprocess.Popen(  # stands in for Mosquitto: says "reloaded" on SIGHUP, then ends
        [
            sys.executable,
            "-c",
            "import signal, sys, time\n"
            "signal.signal(signal.SIGHUP, lambda *a: (print('reloaded'), sys.exit(0)))\n"
            "print('ready', flush=True)\ntime.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert stand_in.stdout is not None and stand_in.stdout.readline().strip() == "ready"
        pid_file = tmp_path / "mosquitto.pid"
        pid_file.write_text(f"{stand_in.pid}\n")
        settings = Settings(
            timezone="Europe/Oslo",
            mqtt=HUB_MQTT,
            broker=BrokerSettings(
                password_file=tmp_path / "passwd", acl_file=tmp_path / "acl", pid_file=pid_file
            ),
        )
        app = create_app(settings, session_factory=seeded, clock=clock)
        with TestClient(app, follow_redirects=False) as client:
            sign_in(client, StaffRole.INSTALLER)
            result = _register(client, csrf_of(seeded, client))
        assert 'data-sync="synced"' in result.text
        assert "BTN-0042:" in (tmp_path / "passwd").read_text()
        assert stand_in.wait(10) == 0
        assert stand_in.stdout.read().strip() == "reloaded"
    finally:
        if stand_in.poll() is None:
            stand_in.kill()
