"""Retention: old raw sensor events go; recent ones, alarms, timelines and the audit log stay."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from hub.cli import app
from hub.clock import SystemClock
from hub.retention import delete_old_events
from hub.storage.db import transaction
from hub.storage.models import (
    Alarm,
    AlarmStatus,
    AlarmTimelineEntry,
    AuditEntry,
    Resident,
    SensorEvent,
    Severity,
)
from tests.factories import T0, add_home

runner = CliRunner()
AGES_DAYS = (90, 40, 31, 29, 1, 0)


def seed(factory: sessionmaker[Session], now: datetime) -> None:
    """Events aged ``AGES_DAYS`` before ``now``, and an old alarm with timeline and audit entry."""
    add_home(factory)
    old = now - timedelta(days=90)
    with transaction(factory) as session:
        for n, age in enumerate(AGES_DAYS):
            received = now - timedelta(days=age, minutes=1)
            session.add(
                SensorEvent(
                    device_id="d-fall",
                    home_id="h1",
                    kind="fall",
                    event_ts=received,
                    received_at=received,
                    seq=n,
                    dedup_key=f"{n}@x",
                    data={"type": "fall"},
                )
            )
        resident = session.scalars(select(Resident)).one()
        alarm = Alarm(
            resident_id=resident.id,
            home_id="h1",
            device_id="d-fall",
            type="fall",
            severity=Severity.RED,
            status=AlarmStatus.RESOLVED,
            opened_at=old,
            updated_at=old,
        )
        session.add(alarm)
        session.flush()
        session.add(AlarmTimelineEntry(alarm_id=alarm.id, at=old, actor="hub", kind="transition"))
        session.add(AuditEntry(at=old, username="nina", role="nurse", action="alarm.read"))


def counts(factory: sessionmaker[Session]) -> dict[str, int]:
    with factory() as session:
        return {
            model.__tablename__: session.scalar(select(func.count()).select_from(model)) or 0
            for model in (SensorEvent, Alarm, AlarmTimelineEntry, AuditEntry)
        }


@pytest.mark.parametrize("batch_size", [1, 1000])
def test_old_events_are_deleted_and_alarms_timelines_audit_kept(
    session_factory: sessionmaker[Session], batch_size: int
) -> None:
    seed(session_factory, T0)

    with transaction(session_factory) as session:
        deleted = delete_old_events(session, now=T0, days=30, batch_size=batch_size)

    assert deleted == 3
    assert counts(session_factory) == {
        "sensor_events": 3,
        "alarms": 1,
        "alarm_timeline": 1,
        "audit_entries": 1,
    }
    with session_factory() as session:
        oldest = session.scalar(select(func.min(SensorEvent.received_at)))
        assert oldest is not None and oldest >= T0 - timedelta(days=30)
    with transaction(session_factory) as session:
        assert delete_old_events(session, now=T0, days=30) == 0


def test_limit_stops_after_that_many_so_callers_can_commit_between(
    session_factory: sessionmaker[Session],
) -> None:
    seed(session_factory, T0)
    with transaction(session_factory) as session:
        assert delete_old_events(session, now=T0, days=30, batch_size=2, limit=2) == 2
    with transaction(session_factory) as session:
        assert delete_old_events(session, now=T0, days=30, batch_size=2, limit=2) == 1
    assert counts(session_factory)["sensor_events"] == 3


def test_naive_now_and_zero_days_are_refused(session_factory: sessionmaker[Session]) -> None:
    with session_factory() as session:
        with pytest.raises(ValueError):
            delete_old_events(session, now=T0.replace(tzinfo=None), days=30)
        with pytest.raises(ValueError):
            delete_old_events(session, now=T0, days=0)


def test_retention_run_cli_deletes_by_the_configured_days_and_reports_the_count(
    db_url: str, session_factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(session_factory, SystemClock().now())
    monkeypatch.setenv("CAREHUB_DATABASE__URL", db_url)
    monkeypatch.setenv("CAREHUB_SECURITY__EVENT_RETENTION_DAYS", "35")

    result = runner.invoke(app, ["retention", "run", "--batch-size", "1"])

    assert result.exit_code == 0, result.output
    assert "Deleted 2 sensor events" in result.output
    assert "older than 35 days" in result.output
    assert counts(session_factory) == {
        "sensor_events": 4,
        "alarms": 1,
        "alarm_timeline": 1,
        "audit_entries": 1,
    }
