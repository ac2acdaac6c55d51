"""Alembic environment: migrates CareHub's database (SQLite or PostgreSQL) to the ORM model."""

from __future__ import annotations

from logging.config import fileConfig
from typing import Any

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import Connection, text

from hub.config import Settings
from hub.storage.db import make_engine, normalise_url
from hub.storage.migrate import COMPARE_TYPE, include_object
from hub.storage.models import Base, UTCDateTime

config = context.config
target_metadata = Base.metadata

# Only the alembic CLI configures logging from alembic.ini; when the hub migrates through
# hub.storage.migrate there is no ini file and the application's logging is left alone.
if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def database_url() -> str:
    """The URL to migrate: config attribute, then ``-x url=...``, then CareHub's settings."""
    url = config.attributes.get("url") or context.get_x_argument(as_dictionary=True).get("url")
    if not url:
        url = Settings().database.url
    return normalise_url(str(url))


def render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | bool:
    """Render the model's UTCDateTime as a plain DateTime so migrations never import hub code."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def configure_options(url: str) -> dict[str, Any]:
    return {
        "target_metadata": target_metadata,
        "compare_type": COMPARE_TYPE,
        "include_object": include_object,
        "render_item": render_item,
        # SQLite cannot ALTER most things: batch mode rebuilds the table instead.
        "render_as_batch": url.startswith("sqlite"),
    }


def run_migrations_offline() -> None:
    """Emit the SQL to stdout (``alembic upgrade head --sql``) without a database."""
    url = database_url()
    context.configure(
        url=url, literal_binds=True, dialect_opts={"paramstyle": "named"}, **configure_options(url)
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    url = database_url()
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            if connection.dialect.name == "sqlite":
                _run_sqlite(connection, url)
            else:
                context.configure(connection=connection, **configure_options(url))
                with context.begin_transaction():
                    context.run_migrations()
    finally:
        # Also discards the SQLite connection whose foreign keys were switched off below.
        engine.dispose()


def _run_sqlite(connection: Connection, url: str) -> None:
    # A batch migration copies a table and drops the old one; with foreign keys on, dropping a
    # referenced table fails or cascades. Switch them off for the migration (the pragma only
    # works outside a transaction).
    connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
    connection.commit()
    # SQLite can roll DDL back, but Python's sqlite3 opens no transaction before DDL: begin one
    # explicitly so a migration that fails or is killed half-way leaves the database as it was.
    connection.exec_driver_sql("BEGIN")
    context.configure(connection=connection, **configure_options(url))
    with context.begin_transaction():
        context.run_migrations()
    violations = connection.execute(text("PRAGMA foreign_key_check")).fetchall()
    if violations:
        connection.rollback()
        raise RuntimeError(f"migration would leave foreign-key violations: {violations[:10]}")
    connection.commit()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
