"""Schema migrations: run Alembic (``alembic/``) programmatically and detect model drift."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from hub.storage.db import make_engine, normalise_url
from hub.storage.models import UNMAPPED_TABLES, Base

# hub/storage/migrate.py -> the repository root, which holds alembic/ (the project is
# installed editable, so this also holds when the hub runs from another directory).
REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT_LOCATION = REPO_ROOT / "alembic"

# Options shared by env.py (migrations, autogenerate) and check_no_drift().
COMPARE_TYPE = True


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Autogenerate filter: leave tables the ORM does not map (``apscheduler_jobs``) alone."""
    if type_ == "table":
        return name not in UNMAPPED_TABLES
    table = getattr(obj, "table", None)
    return table is None or table.name not in UNMAPPED_TABLES


def alembic_config(url: str) -> Config:
    """An Alembic config for ``url`` that finds ``alembic/`` from any working directory."""
    config = _scripts_config()
    # Passed as an attribute, not as sqlalchemy.url, so passwords with '%' survive intact.
    config.attributes["url"] = normalise_url(url)
    return config


def _scripts_config() -> Config:
    if not (SCRIPT_LOCATION / "env.py").is_file():
        raise FileNotFoundError(
            f"Alembic scripts not found at {SCRIPT_LOCATION}: install CareHub editable "
            "(pip install -e .) so the repository's alembic/ folder is next to the package"
        )
    config = Config()
    # ConfigParser interpolates '%', so a path containing one must be escaped.
    config.set_main_option("script_location", str(SCRIPT_LOCATION).replace("%", "%%"))
    return config


def head_revision() -> str | None:
    """The newest revision in ``alembic/versions``: what ``upgrade()`` migrates to."""
    return ScriptDirectory.from_config(_scripts_config()).get_current_head()


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at ``url`` up to ``revision``."""
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str = "base") -> None:
    """Migrate the database at ``url`` down to ``revision`` (default: drop everything)."""
    command.downgrade(alembic_config(url), revision)


def current(url: str) -> str | None:
    """The revision the database at ``url`` is at; ``None`` when it was never migrated."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def check_no_drift(url: str) -> list[Any]:
    """Differences between the ORM model and the migrated database; empty when they match."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection,
                opts={"compare_type": COMPARE_TYPE, "include_object": include_object},
            )
            diffs: list[Any] = compare_metadata(context, Base.metadata)
            return diffs
    finally:
        engine.dispose()
