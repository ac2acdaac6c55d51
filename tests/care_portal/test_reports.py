"""Reports: the pure figures on crafted data, then the page and its CSV on a real database."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from care_portal.app import create_app
from care_portal.reports_calc import (
    AlarmFacts,
    DeviceFacts,
    alarms_by_type,
    bar_chart,
    device_rows,
    device_summary,
    false_alarm_rate,
    false_alarms_by_type,
    format_duration,
    hbar_chart,
    iso_week,
    motion_by_hour,
    percentile,
    response_times,
    to_csv,
)
from hub.alarms import service
from hub.clock import FakeClock
from hub.config import Settings
from hub.storage.models import AlarmStatus, Severity, StaffRole
from tests.care_portal.api_seed import resident_ids
from tests.care_portal.conftest import SignIn
from tests.care_portal.seed import DOOR_CONTACT, FALL_SENSOR, HOME, T0, seed_portal_data
from tests.care_portal.test_app import text_of

OSLO = ZoneInfo("Europe/Oslo")
MONDAY = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # ISO week 2026-W02


def facts(
    alarm_id: int,
    *,
    opened: datetime = MONDAY,
    taken_s: float | None = None,
    on_site_s: float | None = None,
    zone: str = "Ørje",
    type: str = "fall",
    status: AlarmStatus = AlarmStatus.RESOLVED,
    outcome: str | None = "helped",
    device_id: str | None = None,
) -> AlarmFacts:
    taken = opened + timedelta(seconds=taken_s) if taken_s is not None else None
    on_site = taken + timedelta(seconds=on_site_s) if taken and on_site_s is not None else None
    return AlarmFacts(
        id=alarm_id,
        zone=zone,
        type=type,
        status=status,
        outcome=outcome,
        opened_at=opened,
        taken_at=taken,
        on_site_at=on_site,
        device_id=device_id,
    )


# --- pure ----------------------------------------------------------------------------------


def test_percentiles_interpolate_between_ranks() -> None:
    assert percentile([10, 20, 30, 40], 50) == 25
    assert percentile([40, 10, 30, 20], 90) == pytest.approx(37)
    assert percentile([42], 90) == 42
    assert percentile([1, 2, 3], 0) == 1 and percentile([1, 2, 3], 100) == 3
    assert percentile([], 50) is None
    with pytest.raises(ValueError):
        percentile([1], 101)


def test_response_times_per_week_and_zone_skip_untaken_alarms() -> None:
    alarms = [
        facts(1, taken_s=30, on_site_s=600),
        facts(2, taken_s=90, on_site_s=1200),
        facts(3, taken_s=None, status=AlarmStatus.OPEN, outcome=None),  # nobody took it yet
        facts(4, taken_s=60, on_site_s=None),  # taken, never reached on site
        facts(5, zone="Mysen", taken_s=300, on_site_s=900),
        facts(6, opened=MONDAY + timedelta(days=7), taken_s=20),
    ]

    rows = response_times(alarms, OSLO)

    assert [(r.week, r.zone) for r in rows] == [
        ("2026-W02", "Mysen"),
        ("2026-W02", "Ørje"),
        ("2026-W03", "Ørje"),
    ]
    orje = rows[1]
    assert (orje.taken_count, orje.taken_p50_s, orje.taken_p90_s) == (3, 60, 84)
    assert (orje.on_site_count, orje.on_site_p50_s, orje.on_site_p90_s) == (2, 900, 1140)
    assert rows[2].on_site_p50_s is None and rows[2].taken_p50_s == 20


def test_the_iso_week_is_the_municipality_s_week() -> None:
    sunday_night_utc = datetime(2026, 1, 4, 23, 30, tzinfo=UTC)  # Monday 00:30 in Oslo
    assert iso_week(sunday_night_utc, OSLO) == "2026-W02"
    assert iso_week(sunday_night_utc, ZoneInfo("UTC")) == "2026-W01"


def test_false_alarm_rate_counts_only_resolved_alarms() -> None:
    alarms = [
        facts(1, outcome="false_alarm"),
        facts(2, outcome="helped"),
        facts(3, outcome="false_alarm", type="door_night"),
        facts(4, outcome="technical", type="door_night"),
        facts(5, status=AlarmStatus.CANCELLED, outcome=None),
        facts(6, status=AlarmStatus.ACKNOWLEDGED, outcome=None),
    ]

    total = false_alarm_rate(alarms)

    assert (total.false_alarms, total.resolved, total.rate) == (2, 4, 0.5)
    assert [(k, r.false_alarms, r.resolved) for k, r in false_alarms_by_type(alarms)] == [
        ("door_night", 1, 2),
        ("fall", 1, 2),
    ]
    assert false_alarm_rate([]).rate is None


def test_alarms_by_type_most_frequent_first() -> None:
    alarms = [facts(1), facts(2, type="button"), facts(3), facts(4, type="door_night")]
    assert alarms_by_type(alarms) == [("fall", 2), ("button", 1), ("door_night", 1)]


def test_devices_with_offline_alarms_and_low_batteries() -> None:
    devices = [
        DeviceFacts("a", "h1", "Ørje", "fall_sensor", online=True, battery=87),
        DeviceFacts("b", "h1", "Ørje", "door_contact", online=False, battery=12),
        DeviceFacts("c", "h2", "Mysen", "alarm_button", online=None, battery=None),
    ]
    alarms = [
        facts(1, type="device_offline", device_id="b"),
        facts(2, type="device_offline", device_id="b"),
        facts(3, type="fall", device_id="a"),
    ]

    rows = device_rows(devices, alarms, low_battery_pct=20)
    summary = device_summary(rows)

    assert [(r.id, r.offline_alarms, r.battery_low) for r in rows] == [
        ("b", 2, True),
        ("a", 0, False),
        ("c", 0, False),
    ]
    assert (summary.total, summary.online, summary.low_battery) == (3, 1, 1)
    assert summary.online_share == pytest.approx(1 / 3)


def test_motion_is_counted_by_local_hour() -> None:
    counts = motion_by_hour(
        [
            datetime(2026, 1, 4, 23, 30, tzinfo=UTC),  # 00:30 Oslo
            datetime(2026, 7, 4, 22, 30, tzinfo=UTC),  # 00:30 Oslo (summer time)
            datetime(2026, 1, 5, 7, 0, tzinfo=UTC),  # 08:00 Oslo
        ],
        OSLO,
    )
    assert len(counts) == 24 and counts[0] == 2 and counts[8] == 1 and sum(counts) == 3


def test_bars_are_scaled_to_the_tallest() -> None:
    chart = bar_chart([("a", 4), ("b", 2), ("c", 0)], width=300, height=100, gap=0)

    assert [(b.x, b.y, b.width, b.height) for b in chart.bars] == [
        (0, 0, 100, 100),
        (100, 50, 100, 50),
        (200, 100, 100, 0),
    ]
    assert bar_chart([("a", 0)]).bars[0].height == 0
    wide = hbar_chart([("x", 10), ("y", 5)], width=400, label_width=100, value_width=100)
    assert [b.width for b in wide.bars] == [200, 100]


def test_csv_and_durations() -> None:
    text = to_csv(["a", "b"], [[1, None], ["x,y", 2]])
    assert text == 'a,b\r\n1,\r\n"x,y",2\r\n'
    assert [format_duration(s) for s in (None, 45, 125, 600, 3900, 7200)] == [
        "–",
        "45 s",
        "2 min 5 s",
        "10 min",
        "1 h 5 min",
        "2 h",
    ]


# --- the page and the CSV --------------------------------------------------------------------


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def seeded(session_factory: sessionmaker[Session]) -> sessionmaker[Session]:
    """Last week in Ørje: a fall taken in 45 s (on site 20 min later), a button press taken
    in 75 s that was a false alarm, and the hall door offline (technical)."""
    seed_portal_data(session_factory)
    kari, _ = resident_ids(session_factory)
    friday = T0 - timedelta(days=3)
    with session_factory() as session, session.begin():
        fall, _ = service.open_or_join(
            session,
            now=friday,
            resident_id=kari,
            home_id=HOME,
            type="fall",
            severity=Severity.RED,
            summary="fall",
            device_id=FALL_SENSOR,
        )
        service.transition(
            session,
            fall.id,
            to=AlarmStatus.ACKNOWLEDGED,
            actor="user:nurse",
            now=friday + timedelta(seconds=45),
        )
        service.transition(
            session,
            fall.id,
            to=AlarmStatus.ON_SITE,
            actor="user:nurse",
            now=friday + timedelta(seconds=45, minutes=20),
        )
        service.transition(
            session,
            fall.id,
            to=AlarmStatus.RESOLVED,
            actor="user:nurse",
            now=friday + timedelta(minutes=40),
            outcome="helped",
        )
        saturday = friday + timedelta(days=1)
        button, _ = service.open_or_join(
            session,
            now=saturday,
            resident_id=kari,
            home_id=HOME,
            type="button",
            severity=Severity.RED,
            summary="button",
        )
        service.transition(
            session,
            button.id,
            to=AlarmStatus.ACKNOWLEDGED,
            actor="user:nurse",
            now=saturday + timedelta(seconds=75),
        )
        service.transition(
            session,
            button.id,
            to=AlarmStatus.RESOLVED,
            actor="user:nurse",
            now=saturday + timedelta(minutes=5),
            outcome="false_alarm",
        )
        offline, _ = service.open_or_join(
            session,
            now=T0 - timedelta(hours=3),
            resident_id=kari,
            home_id=HOME,
            type="device_offline",
            severity=Severity.GREEN,
            summary="offline",
            device_id=DOOR_CONTACT,
        )
        service.transition(
            session,
            offline.id,
            to=AlarmStatus.RESOLVED,
            actor="user:installer",
            now=T0 - timedelta(hours=1),
            outcome="technical",
        )
    return session_factory


@pytest.fixture
def client(seeded: sessionmaker[Session], clock: FakeClock) -> Iterator[TestClient]:
    app = create_app(Settings(timezone="Europe/Oslo"), session_factory=seeded, clock=clock)
    with TestClient(app, follow_redirects=False) as client:
        yield client


def table(html: str, table_id: str) -> str:
    match = re.search(rf'<table[^>]*id="{table_id}".*?</table>', html, re.DOTALL)
    assert match, f"table {table_id} is not on the page"
    return text_of(match.group(0))


def read_csv(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_the_coordinator_reads_last_month_s_figures(client: TestClient, sign_in: SignIn) -> None:
    sign_in(client, StaffRole.COORDINATOR)

    response = client.get("/reports")

    assert response.status_code == 200
    html = response.text
    assert 'value="2025-12-09"' in html and 'value="2026-01-05"' in html  # the last 4 weeks
    assert "2026-W01 Ørje 2 1 min 1 min 12 s 1 20 min 20 min" in table(html, "response-times")
    assert table(html, "alarms-by-type").endswith("Alarmknapp 1 Enhet frakoblet 1 Fall 1")
    assert re.search(r'data-testid="false-alarm-rate">33\.3 %<', html)
    assert "door-1001 h-1002" not in html
    devices = table(html, "device-report")
    assert "door-1001 h-1001 Ørje Dørkontakt frakoblet 12 % (lavt) 1" in devices
    for chart in ("chart-taken", "chart-on-site", "chart-types", "chart-offline"):
        assert re.search(rf'<svg class="chart chart--h" id="{chart}"[^>]*role="img"', html)
    assert (
        html.count('<rect class="bar"') == 2 + 2 + 3 + 1
    )  # two weeks, two weeks, three types, one device


def test_a_zone_without_alarms_says_so(client: TestClient, sign_in: SignIn) -> None:
    sign_in(client, StaffRole.COORDINATOR)
    html = client.get("/reports", params={"zone": "2"}).text  # Mysen
    assert "Ingen alarmer i perioden." in html
    assert 'data-testid="devices-online">–<' in html  # Ola's home has no devices


def test_a_bad_period_is_explained_not_a_crash(client: TestClient, sign_in: SignIn) -> None:
    sign_in(client, StaffRole.COORDINATOR)
    response = client.get("/reports", params={"from": "yesterday", "zone": "x"})
    assert response.status_code == 400
    assert "Ugyldig dato" in response.text and "Ukjent sone" in response.text


def test_the_csv_files_have_a_header_and_rows(client: TestClient, sign_in: SignIn) -> None:
    sign_in(client, StaffRole.COORDINATOR)

    responses = client.get("/reports.csv", params={"kind": "response_times"})
    by_type = client.get("/reports.csv", params={"kind": "alarms_by_type"})
    false_alarms = client.get("/reports.csv", params={"kind": "false_alarms"})
    devices = client.get("/reports.csv", params={"kind": "devices"})

    assert responses.headers["content-type"] == "text/csv; charset=utf-8"
    assert "attachment" in responses.headers["content-disposition"]
    assert read_csv(responses.text) == [
        [
            "week",
            "zone",
            "taken_count",
            "open_to_taken_p50_s",
            "open_to_taken_p90_s",
            "on_site_count",
            "taken_to_on_site_p50_s",
            "taken_to_on_site_p90_s",
        ],
        ["2026-W01", "Ørje", "2", "60", "72", "1", "1200", "1200"],
        ["2026-W02", "Ørje", "0", "", "", "0", "", ""],
    ]
    assert read_csv(by_type.text) == [
        ["type", "count"],
        ["button", "1"],
        ["device_offline", "1"],
        ["fall", "1"],
    ]
    assert read_csv(false_alarms.text)[-1] == ["all", "1", "3", "0.3333"]
    rows = read_csv(devices.text)
    assert rows[0][0] == "device" and rows[0][-1] == "offline_alarms"
    assert rows[1] == ["door-1001", "h-1001", "Ørje", "door_contact", "false", "12", "true", "1"]
    assert len(rows) == 4  # three registered devices, not the retired one


def test_reports_are_for_coordinators_and_admins(client: TestClient, sign_in: SignIn) -> None:
    sign_in(client, StaffRole.NURSE)
    assert client.get("/reports").status_code == 403
    assert client.get("/reports.csv").status_code == 403


def test_an_unknown_csv_kind_is_refused(client: TestClient, sign_in: SignIn) -> None:
    sign_in(client, StaffRole.ADMIN)
    response = client.get("/reports.csv", params={"kind": "salaries"})
    assert response.status_code == 400 and "response_times" in response.text
