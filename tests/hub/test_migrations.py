"""Alembic migrations build exactly the ORM schema on SQLite and PostgreSQL, and undo it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, Float, LargeBinary, MetaData, Table, Unicode, inspect, text

from hub.storage.db import make_engine
from hub.storage.migrate import (
    REPO_ROOT,
    alembic_config,
    check_no_drift,
    current,
    downgrade,
    head_revision,
    upgrade,
)
from hub.storage.models import UNMAPPED_TABLES, Base
from tests.fixtures.databases import MakePgDatabase

APPEND_ONLY_TRIGGERS = {"alarm_timeline_no_update", "alarm_timeline_no_delete"}


@pytest.fixture(
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
    ids=["sqlite", "postgres"],
)
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database that was never migrated."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'empty.db'}"
    make_pg_database: MakePgDatabase = request.getfixturevalue("make_pg_database")
    return make_pg_database()


def table_names(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def append_only_triggers(url: str) -> set[str]:
    """Names of the alarm_timeline triggers the database has (and, on PostgreSQL, its function)."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            if connection.dialect.name == "sqlite":
                query = "SELECT name FROM sqlite_master WHERE type = 'trigger'"
            else:
                query = (
                    "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal UNION "
                    "SELECT proname FROM pg_proc WHERE proname = 'alarm_timeline_append_only'"
                )
            return set(connection.execute(text(query)).scalars())
    finally:
        engine.dispose()


def create_apscheduler_jobs_table(url: str) -> None:
    """The table APScheduler 3's SQLAlchemyJobStore creates in the hub's database."""
    metadata = MetaData()
    Table(
        "apscheduler_jobs",
        metadata,
        Column("id", Unicode(191), primary_key=True),
        Column("next_run_time", Float(25), index=True),
        Column("job_state", LargeBinary, nullable=False),
    )
    engine = make_engine(url)
    try:
        metadata.create_all(engine)
    finally:
        engine.dispose()


def test_upgrade_from_empty_builds_the_models_schema(empty_url: str) -> None:
    assert current(empty_url) is None

    upgrade(empty_url)

    assert current(empty_url) == head_revision()
    assert table_names(empty_url) == set(Base.metadata.tables) | {"alembic_version"}
    assert check_no_drift(empty_url) == []
    assert append_only_triggers(empty_url) >= APPEND_ONLY_TRIGGERS


def test_downgrade_to_base_removes_everything_and_upgrade_rebuilds_it(empty_url: str) -> None:
    upgrade(empty_url)

    downgrade(empty_url)

    assert table_names(empty_url) == {"alembic_version"}
    assert append_only_triggers(empty_url) == set()
    assert current(empty_url) is None

    upgrade(empty_url)

    assert current(empty_url) == head_revision()
    assert check_no_drift(empty_url) == []
    assert append_only_triggers(empty_url) >= APPEND_ONLY_TRIGGERS


def test_autogenerate_leaves_the_apscheduler_jobs_table_alone(empty_url: str) -> None:
    upgrade(empty_url)
    create_apscheduler_jobs_table(empty_url)
    assert "apscheduler_jobs" in UNMAPPED_TABLES

    # Without the filter, autogenerate would want to drop the scheduler's table...
    engine = make_engine(empty_url)
    try:
        with engine.connect() as connection:
            unfiltered = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    finally:
        engine.dispose()
    assert ("remove_table", "apscheduler_jobs") in {(diff[0], diff[1].name) for diff in unfiltered}

    # ...but neither check_no_drift nor env.py (what `alembic revision --autogenerate` runs) does.
    assert check_no_drift(empty_url) == []
    command.check(alembic_config(empty_url))
    assert "apscheduler_jobs" in table_names(empty_url)


def test_a_migration_that_fails_half_way_leaves_the_database_as_it_was(
    empty_url: str, tmp_path: Path
) -> None:
    scripts = tmp_path / "alembic"
    shutil.copytree(REPO_ROOT / "alembic", scripts, ignore=shutil.ignore_patterns("__pycache__"))
    head = head_revision()
    (scripts / "versions" / "9999_fails.py").write_text(
        f'''"""A migration that dies after changing things."""
import sqlalchemy as sa
from alembic import op

revision = "9999"
down_revision = {head!r}
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("half_done", sa.Column("id", sa.Integer, primary_key=True))
    with op.batch_alter_table("homes") as batch:
        batch.add_column(sa.Column("half_done", sa.Integer, nullable=True))
    raise RuntimeError("killed half-way")


def downgrade() -> None:
    pass
'''
    )
    upgrade(empty_url)
    config = alembic_config(empty_url)
    config.set_main_option("script_location", str(scripts))

    with pytest.raises(RuntimeError, match="killed half-way"):
        command.upgrade(config, "head")

    assert current(empty_url) == head
    assert "half_done" not in table_names(empty_url)
    assert check_no_drift(empty_url) == []


def run_alembic_cli(*args: str, cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(REPO_ROOT / "alembic.ini"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout + result.stderr


def test_alembic_cli_takes_the_url_from_x_argument_or_settings(tmp_path: Path) -> None:
    # Run from an unrelated directory: alembic.ini must find alembic/ and the hub package.
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("CAREHUB_")}
    from_x = tmp_path / "from-x.db"
    run_alembic_cli("-x", f"url=sqlite:///{from_x}", "upgrade", "head", cwd=tmp_path, env=env)
    assert current(f"sqlite:///{from_x}") == head_revision()

    from_settings = tmp_path / "from-settings.db"
    env["CAREHUB_DATABASE__URL"] = f"sqlite:///{from_settings}"
    run_alembic_cli("upgrade", "head", cwd=tmp_path, env=env)
    assert current(f"sqlite:///{from_settings}") == head_revision()
