"""The JSON API on SQLite and PostgreSQL: tokens, alarms through their lifecycle, residents,
devices, roles and the OpenAPI document."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from care_portal.app import create_app
from care_portal.const import API_TOKEN_TTL_S
from hub.clock import FakeClock
from hub.config import Settings
from hub.storage.models import ApiToken, StaffUser
from tests.care_portal.api_seed import PASSWORD, add_alarms, add_staff, resident_ids
from tests.care_portal.seed import DOOR_CONTACT, FALL_SENSOR, HOME, RETIRED, T0, seed_portal_data

TOKEN_URL = "/api/v1/auth/token"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def seeded(session_factory: sessionmaker[Session]) -> sessionmaker[Session]:
    seed_portal_data(session_factory)
    add_staff(session_factory)
    return session_factory


@pytest.fixture
def alarms(seeded: sessionmaker[Session]) -> dict[str, int]:
    return add_alarms(seeded)


@pytest.fixture
def changed() -> list[int]:
    """The alarm ids the app reported through ``on_alarm_changed``."""
    return []


@pytest.fixture
def client(
    seeded: sessionmaker[Session], clock: FakeClock, changed: list[int]
) -> Iterator[TestClient]:
    app = create_app(
        Settings(), session_factory=seeded, clock=clock, on_alarm_changed=changed.append
    )
    with TestClient(app) as client:
        yield client


def login(client: TestClient, username: str, password: str = PASSWORD) -> dict[str, str]:
    response = client.post(TOKEN_URL, data={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


@pytest.fixture
def nurse(client: TestClient) -> dict[str, str]:
    return login(client, "nurse")


# ---- tokens --------------------------------------------------------------------------------


def test_the_nurse_logs_in_and_only_the_tokens_hash_is_kept(
    client: TestClient, seeded: sessionmaker[Session]
) -> None:
    response = client.post(TOKEN_URL, data={"username": "nurse", "password": PASSWORD})

    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == API_TOKEN_TTL_S == 12 * 3600
    assert len(body["access_token"]) >= 43  # 32 random bytes, URL-safe base64
    assert response.headers["cache-control"] == "no-store"
    with seeded() as session:
        [stored] = session.scalars(select(ApiToken)).all()
    assert stored.token_sha256 == hashlib.sha256(body["access_token"].encode()).hexdigest()
    assert (stored.created_at, stored.expires_at) == (T0, T0 + timedelta(hours=12))


@pytest.mark.parametrize(
    ("username", "password"),
    [("nurse", "wrong"), ("nobody", PASSWORD), ("retired", PASSWORD)],
)
def test_a_failed_login_says_the_same_whatever_was_wrong(
    client: TestClient, username: str, password: str
) -> None:
    response = client.post(TOKEN_URL, data={"username": username, "password": password})

    assert response.status_code == 401
    assert response.json() == {"detail": "Incorrect username or password."}
    assert response.headers["www-authenticate"] == "Bearer"


def test_a_token_expires_after_twelve_hours_on_the_apps_clock(
    client: TestClient, clock: FakeClock, alarms: dict[str, int]
) -> None:
    headers = login(client, "nurse")

    clock.advance(timedelta(hours=12) - timedelta(seconds=1))
    assert client.get("/api/v1/alarms", headers=headers).status_code == 200
    clock.advance(timedelta(seconds=1))
    expired = client.get("/api/v1/alarms", headers=headers)

    assert expired.status_code == 401
    assert "expired" in expired.json()["detail"]
    assert expired.headers["www-authenticate"].startswith("Bearer")


def test_a_revoked_token_or_a_deactivated_user_is_refused(
    client: TestClient, seeded: sessionmaker[Session], alarms: dict[str, int]
) -> None:
    nurse = login(client, "nurse")
    coordinator = login(client, "coordinator")
    with seeded() as session, session.begin():
        nurse_token = nurse["Authorization"].removeprefix("Bearer ")
        session.execute(
            update(ApiToken)
            .where(ApiToken.token_sha256 == hashlib.sha256(nurse_token.encode()).hexdigest())
            .values(revoked_at=T0)
        )
        session.execute(
            update(StaffUser).where(StaffUser.username == "coordinator").values(active=False)
        )

    assert client.get("/api/v1/alarms", headers=nurse).status_code == 401
    assert client.get("/api/v1/alarms", headers=coordinator).status_code == 401
    assert client.get("/api/v1/alarms", headers=login(client, "nurse")).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic bnVyc2U6eA=="}],
)
def test_no_valid_token_no_data(client: TestClient, headers: dict[str, str]) -> None:
    for path in ("/api/v1/alarms", "/api/v1/alarms/1", "/api/v1/residents", "/api/v1/devices"):
        response = client.get(path, headers=headers)
        assert response.status_code == 401, path
    assert client.post("/api/v1/alarms/1/acknowledge", headers=headers).status_code == 401


# ---- alarms --------------------------------------------------------------------------------


def test_list_alarms_newest_first_with_filters(
    client: TestClient, nurse: dict[str, str], alarms: dict[str, int], seeded: sessionmaker[Session]
) -> None:
    kari, ola = resident_ids(seeded)

    def ids(**params: object) -> list[int]:
        response = client.get("/api/v1/alarms", headers=nurse, params=params)  # type: ignore[arg-type]
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["count"] >= len(body["data"])
        return [alarm["id"] for alarm in body["data"]]

    everything = client.get("/api/v1/alarms", headers=nurse).json()
    assert everything["count"] == 3
    fall = everything["data"][0]
    assert fall["id"] == alarms["fall"]
    assert (fall["type"], fall["severity"], fall["status"], fall["resident_id"]) == (
        "fall",
        "red",
        "open",
        kari,
    )
    assert fall["device_id"] == FALL_SENSOR and fall["event_count"] == 1
    assert fall["opened_at"].startswith("2026-01-05T11:54:00")
    assert ids() == [alarms["fall"], alarms["door"], alarms["battery"]]
    assert ids(status="open") == [alarms["fall"], alarms["door"]]
    assert ids(status=["resolved", "cancelled"]) == [alarms["battery"]]
    assert ids(resident_id=ola) == [alarms["battery"]]
    assert ids(type="door_night") == [alarms["door"]]
    assert ids(since="2026-01-05T11:30:00+00:00") == [alarms["fall"]]
    assert ids(until="2026-01-05T11:30:00Z") == [alarms["door"], alarms["battery"]]
    assert ids(limit=1, offset=1) == [alarms["door"]]
    for bad in ({"limit": 501}, {"limit": 0}, {"status": "closed"}, {"since": "yesterday"}):
        response = client.get("/api/v1/alarms", headers=nurse, params=bad)
        assert response.status_code == 422, bad


def test_get_an_alarm_with_its_timeline(
    client: TestClient, nurse: dict[str, str], alarms: dict[str, int]
) -> None:
    response = client.get(f"/api/v1/alarms/{alarms['battery']}", headers=nurse)

    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["outcome"]) == ("resolved", "technical")
    steps = [(e["kind"], e["from_status"], e["to_status"], e["actor"]) for e in body["timeline"]]
    assert steps == [
        ("transition", None, "open", "hub:rules"),
        ("transition", "open", "resolved", "user:coordinator"),
    ]
    assert body["timeline"][0]["detail"]["summary"] == "battery 12 %"

    missing = client.get("/api/v1/alarms/999999", headers=nurse)
    assert missing.status_code == 404
    assert missing.json() == {"detail": "alarm 999999 not found"}


def test_the_nurse_takes_the_fall_arrives_and_resolves_it(
    client: TestClient,
    nurse: dict[str, str],
    alarms: dict[str, int],
    clock: FakeClock,
    changed: list[int],
) -> None:
    fall = alarms["fall"]

    clock.advance(timedelta(seconds=40))
    taken = client.post(f"/api/v1/alarms/{fall}/acknowledge", headers=nurse)
    clock.advance(timedelta(minutes=12))
    arrived = client.post(
        f"/api/v1/alarms/{fall}/on-site", headers=nurse, json={"note": "at the door"}
    )
    clock.advance(timedelta(minutes=20))
    resolved = client.post(
        f"/api/v1/alarms/{fall}/resolve",
        headers=nurse,
        json={"outcome": "helped", "note": "helped her up; no injury"},
    )

    assert [r.status_code for r in (taken, arrived, resolved)] == [200, 200, 200]
    assert taken.json()["status"] == "acknowledged"
    assert arrived.json()["status"] == "on_site"
    body = resolved.json()
    assert (body["status"], body["outcome"]) == ("resolved", "helped")
    assert body["updated_at"].startswith("2026-01-05T12:32:40")
    steps = [
        (e["from_status"], e["to_status"], e["actor"], e["at"][11:19], e["detail"].get("note"))
        for e in body["timeline"]
    ]
    assert steps == [
        (None, "open", "hub:rules", "11:54:00", None),
        ("open", "acknowledged", "user:nurse", "12:00:40", None),
        ("acknowledged", "on_site", "user:nurse", "12:12:40", "at the door"),
        ("on_site", "resolved", "user:nurse", "12:32:40", "helped her up; no injury"),
    ]
    assert changed == [fall, fall, fall]  # the hub republishes the home's feedback each time


def test_on_site_before_anyone_acknowledged_is_a_conflict(
    client: TestClient, nurse: dict[str, str], alarms: dict[str, int], changed: list[int]
) -> None:
    response = client.post(f"/api/v1/alarms/{alarms['fall']}/on-site", headers=nurse)

    assert response.status_code == 409
    detail = response.json()["detail"]
    assert "from open to on_site" in detail and "acknowledged" in detail
    timeline = client.get(f"/api/v1/alarms/{alarms['fall']}", headers=nurse).json()["timeline"]
    assert len(timeline) == 1
    assert changed == []


def test_a_second_nurse_cannot_take_a_taken_alarm_and_resolve_needs_a_real_outcome(
    client: TestClient, nurse: dict[str, str], alarms: dict[str, int]
) -> None:
    coordinator = login(client, "coordinator")
    door = alarms["door"]

    helped_unseen = client.post(
        f"/api/v1/alarms/{door}/resolve", headers=coordinator, json={"outcome": "helped"}
    )
    assert helped_unseen.status_code == 409
    assert "acknowledge it first" in helped_unseen.json()["detail"]
    bad_outcome = client.post(
        f"/api/v1/alarms/{door}/resolve", headers=coordinator, json={"outcome": "fixed"}
    )
    assert bad_outcome.status_code == 422
    assert client.post(f"/api/v1/alarms/{door}/acknowledge", headers=nurse).status_code == 200
    again = client.post(f"/api/v1/alarms/{door}/acknowledge", headers=coordinator)
    assert again.status_code == 409
    assert "from acknowledged to acknowledged" in again.json()["detail"]
    unknown = client.post("/api/v1/alarms/999999/acknowledge", headers=nurse)
    assert unknown.status_code == 404


def test_a_coordinator_closes_an_untaken_alarm_as_a_false_alarm(
    client: TestClient, alarms: dict[str, int]
) -> None:
    coordinator = login(client, "coordinator")

    response = client.post(
        f"/api/v1/alarms/{alarms['door']}/resolve",
        headers=coordinator,
        json={"outcome": "false_alarm", "note": "the resident was home all along"},
    )

    assert response.status_code == 200
    last = response.json()["timeline"][-1]
    assert (last["from_status"], last["to_status"], last["actor"]) == (
        "open",
        "resolved",
        "user:coordinator",
    )
    assert last["detail"]["taken_by"] == "user:coordinator"


def test_a_failing_change_listener_does_not_undo_the_change(
    seeded: sessionmaker[Session], clock: FakeClock, alarms: dict[str, int]
) -> None:
    def broken(_alarm_id: int) -> None:
        raise RuntimeError("broker away")

    app = create_app(Settings(), session_factory=seeded, clock=clock, on_alarm_changed=broken)
    with TestClient(app) as client:
        headers = login(client, "nurse")
        response = client.post(f"/api/v1/alarms/{alarms['fall']}/acknowledge", headers=headers)
        stored = client.get(f"/api/v1/alarms/{alarms['fall']}", headers=headers).json()

    assert response.status_code == 200
    assert stored["status"] == "acknowledged"


def test_installers_see_devices_but_not_alarms_or_residents(
    client: TestClient, alarms: dict[str, int]
) -> None:
    installer = login(client, "installer")

    for path in ("/api/v1/alarms", f"/api/v1/alarms/{alarms['fall']}", "/api/v1/residents"):
        response = client.get(path, headers=installer)
        assert response.status_code == 403, path
        assert "Installers see homes and devices only" in response.json()["detail"]
    ack = client.post(f"/api/v1/alarms/{alarms['fall']}/acknowledge", headers=installer)
    assert ack.status_code == 403
    assert client.get("/api/v1/devices", headers=installer).status_code == 200


# ---- residents and devices -----------------------------------------------------------------


def test_residents_list_and_one(
    client: TestClient, nurse: dict[str, str], seeded: sessionmaker[Session]
) -> None:
    kari, ola = resident_ids(seeded)

    listed = client.get("/api/v1/residents", headers=nurse).json()
    one = client.get(f"/api/v1/residents/{kari}", headers=nurse)
    of_home = client.get("/api/v1/residents", headers=nurse, params={"home_id": HOME}).json()

    assert listed["count"] == 2
    assert [r["id"] for r in listed["data"]] == sorted([kari, ola])
    assert one.status_code == 200
    assert one.json()["label"] == "Kari N., Storgata" and one.json()["home_id"] == HOME
    assert [r["id"] for r in of_home["data"]] == [kari]
    assert client.get("/api/v1/residents/999999", headers=nurse).status_code == 404


def test_devices_of_a_home_without_the_retired_one(
    client: TestClient, nurse: dict[str, str]
) -> None:
    body = client.get("/api/v1/devices", headers=nurse, params={"home_id": HOME}).json()

    by_id = {device["id"]: device for device in body["data"]}
    assert RETIRED not in by_id and body["count"] == 3
    assert by_id[DOOR_CONTACT]["battery"] == 12 and by_id[DOOR_CONTACT]["online"] is False
    assert (
        by_id[DOOR_CONTACT]["room"] == "Gang" and by_id[DOOR_CONTACT]["protocol"] == "zigbee2mqtt"
    )
    everything = client.get(
        "/api/v1/devices", headers=nurse, params={"include_retired": True}
    ).json()
    assert RETIRED in {device["id"] for device in everything["data"]}


# ---- OpenAPI -------------------------------------------------------------------------------


def test_the_openapi_document_describes_the_api(client: TestClient) -> None:
    document = client.get("/openapi.json").json()

    paths = document["paths"]
    expected = {
        "/api/v1/auth/token": {"post"},
        "/api/v1/alarms": {"get"},
        "/api/v1/alarms/{alarm_id}": {"get"},
        "/api/v1/alarms/{alarm_id}/acknowledge": {"post"},
        "/api/v1/alarms/{alarm_id}/on-site": {"post"},
        "/api/v1/alarms/{alarm_id}/resolve": {"post"},
        "/api/v1/residents": {"get"},
        "/api/v1/residents/{resident_id}": {"get"},
        "/api/v1/devices": {"get"},
    }
    for path, methods in expected.items():
        assert path in paths, path
        assert methods <= set(paths[path]), path
    scheme = document["components"]["securitySchemes"]["OAuth2PasswordBearer"]
    assert scheme["flows"]["password"]["tokenUrl"] == TOKEN_URL
    assert "409" in paths["/api/v1/alarms/{alarm_id}/resolve"]["post"]["responses"]
    assert client.get("/docs").status_code == 200
