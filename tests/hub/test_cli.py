"""The carehub command line: schema commands, accounts, device listings, demo seeding."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from hub import cli
from hub.cli import app
from hub.clock import FakeClock
from hub.demo import demo_homes
from hub.passwords import verify_password
from hub.seed import seed_demo
from hub.storage import migrate
from hub.storage.db import make_engine, make_sessionmaker, transaction
from hub.storage.models import Device, Resident, StaffUser
from simulators.homes import HomeFleet

runner = CliRunner()


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path}/cli.db"
    monkeypatch.setenv("CAREHUB_DATABASE__URL", url)
    return url


def test_db_upgrade_brings_an_empty_database_to_the_latest_schema(db: str) -> None:
    result = runner.invoke(app, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert migrate.current(db) == migrate.head_revision()
    assert migrate.head_revision() in runner.invoke(app, ["db", "current"]).output


def test_run_refuses_a_database_that_is_not_migrated(db: str) -> None:
    result = runner.invoke(app, ["run", "--no-portal"])
    assert result.exit_code == 2
    assert "carehub db upgrade" in result.output


def test_user_add_stores_an_argon2_hash_and_refuses_a_duplicate(db: str) -> None:
    migrate.upgrade(db)
    args = ["user", "add", "kari", "--role", "nurse", "--name", "Kari S.", "--password", "s3cret"]
    assert runner.invoke(app, args).exit_code == 0
    engine = make_engine(db)
    with make_sessionmaker(engine)() as session:
        user = session.scalars(select(StaffUser).where(StaffUser.username == "kari")).one()
    engine.dispose()
    assert user.role.value == "nurse"
    assert user.password_hash.startswith("$argon2id$")
    assert verify_password(user.password_hash, "s3cret")
    again = runner.invoke(app, args)
    assert again.exit_code == 1 and "exists already" in again.output


def test_an_unknown_setting_stops_the_cli_with_its_name(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAREHUB_DATABSE__URL", "sqlite:///x.db")
    result = runner.invoke(app, ["db", "current"])
    assert result.exit_code == 2
    assert "CAREHUB_DATABSE__URL" in result.output


def test_the_demo_municipality_matches_the_simulated_fleet_and_is_seeded_once(db: str) -> None:
    migrate.upgrade(db)
    fleet = HomeFleet(3, rate_per_min=10, seed=2026, home_prefix="h-orje")
    engine = make_engine(db)
    factory = make_sessionmaker(engine)
    with transaction(factory) as session:
        assert seed_demo(session, FakeClock(), demo_homes(fleet)) is True
    with transaction(factory) as session:
        assert seed_demo(session, FakeClock(), demo_homes(fleet)) is False
        residents = session.scalar(select(func.count()).select_from(Resident))
        device_ids = set(session.scalars(select(Device.id)))
        accounts = set(session.scalars(select(StaffUser.username)))
    engine.dispose()
    assert residents == 3
    assert device_ids == {d.identifier for d in fleet.devices}
    assert accounts == {"admin", "coordinator", "nurse", "installer"}
    cli.console.width = 200  # a wide terminal, so no cell is cut
    listing = runner.invoke(app, ["device", "list", "--home", "h-orje-001"])
    assert listing.exit_code == 0
    assert "h-orje-001" in listing.output
