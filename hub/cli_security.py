"""The ``carehub keys`` (data keys, re-encryption) and ``carehub retention`` commands."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from hub.clock import SystemClock
from hub.config import Settings
from hub.retention import delete_old_events
from hub.storage.crypto import (
    configure_keys,
    count_rows,
    encrypted_columns,
    generate_key,
    rotate,
)
from hub.storage.db import make_engine, make_sessionmaker, transaction
from hub.storage.models import Base

keys_app = typer.Typer(
    help="Data keys of the personal fields encrypted at rest.", no_args_is_help=True
)
retention_app = typer.Typer(help="Retention of raw sensor events.", no_args_is_help=True)

console = Console()
err = Console(stderr=True)


def _settings() -> Settings:
    # Imported here: hub.cli imports this module to register its sub-apps.
    from hub.cli import _require_schema
    from hub.cli import _settings as load

    settings = load()
    _require_schema(settings)
    return settings


@keys_app.command("generate")
def keys_generate() -> None:
    """Print a new random data key (Fernet). Put it FIRST in security.data_keys, never in git."""
    console.print(generate_key(), highlight=False, soft_wrap=True)


@keys_app.command("rotate")
def keys_rotate(
    batch_size: Annotated[int, typer.Option(min=1, help="Rows per transaction.")] = 500,
) -> None:
    """Re-encrypt every personal field with the first data key and rebuild the phone indexes.

    Idempotent and safe while the hub runs. Afterwards the old keys may be removed.
    """
    settings = _settings()
    try:
        ring = configure_keys(settings.security.data_keys)
    except ValueError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    if not ring.encrypts:
        err.print(
            "[red]No data keys configured (security.data_keys): nothing to encrypt with.[/red] "
            "Make one with: carehub keys generate"
        )
        raise typer.Exit(2)
    engine = make_engine(settings.database.url)
    try:
        factory = make_sessionmaker(engine)
        tables = encrypted_columns(Base.metadata)
        totals = count_rows(factory, tables)
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=console, transient=True) as progress:
            tasks = {name: progress.add_task(name, total=total) for name, total in totals.items()}
            report = rotate(
                factory,
                Base.metadata,
                batch_size=batch_size,
                ring=ring,
                on_batch=lambda name, rows: progress.advance(tasks[name], rows),
            )
    finally:
        engine.dispose()
    table = Table("table", "rows", "re-encrypted", "re-indexed", "changed meanwhile")
    for name, counts in report.tables.items():
        table.add_row(
            name,
            str(counts.rows),
            str(counts.reencrypted),
            str(counts.reindexed),
            str(counts.changed_meanwhile),
        )
    console.print(table)
    console.print(
        f"Re-encrypted {report.reencrypted} rows and rebuilt {report.reindexed} phone indexes "
        f"with the first of {len(ring.keys)} data key(s).",
        soft_wrap=True,
    )


@retention_app.command("run")
def retention_run(
    batch_size: Annotated[int, typer.Option(min=1, help="Events per transaction.")] = 1000,
) -> None:
    """Delete raw sensor events older than security.event_retention_days.

    Alarms, their timelines and the audit log are kept.
    """
    settings = _settings()
    days = settings.security.event_retention_days
    now = SystemClock().now()
    engine = make_engine(settings.database.url)
    deleted = 0
    try:
        factory = make_sessionmaker(engine)
        while True:
            # One short transaction per batch: the hub keeps writing events meanwhile.
            with transaction(factory) as session:
                done = delete_old_events(
                    session, now=now, days=days, batch_size=batch_size, limit=batch_size
                )
            deleted += done
            if done < batch_size:
                break
    finally:
        engine.dispose()
    cutoff = (now - timedelta(days=days)).isoformat(timespec="seconds")
    console.print(
        f"Deleted {deleted} sensor events received before {cutoff} "
        f"(older than {days} days); alarms, timelines and the audit log are kept.",
        soft_wrap=True,
    )
