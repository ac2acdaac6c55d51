"""Appending many rows in one go: an executemany INSERT, or PostgreSQL's COPY.

psycopg sends an executemany as one statement per row (pipelined), and SQLAlchemy prepares the
parameters of each row: at the 20,000 outbox rows and 30,000 timeline rows of 10,000 escalation
steps that per-row work is most of a tick. ``COPY … FROM STDIN`` streams the rows in one
command instead. Every value still goes through its column's bind processing first (encryption
of personal fields, UTC times, JSON), exactly as the INSERT would do it; only the transport
differs. Nothing is read back: callers that need the new ids read them by key.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Table, insert
from sqlalchemy.orm import Session

# Below this many rows the INSERT is as quick and the COPY not worth its own round trip.
COPY_MIN_ROWS = 50


def append_rows(session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert ``rows`` (all with the same keys) into ``table`` in the session's transaction."""
    if not rows:
        return
    conn = session.connection()
    dialect = conn.dialect
    names = list(rows[0])
    # a Python-side default of a column the rows leave out: only the INSERT would apply it
    defaulted = any(
        c.default is not None and not c.primary_key for c in table.c if c.name not in names
    )
    if dialect.name != "postgresql" or len(rows) < COPY_MIN_ROWS or defaulted:
        conn.execute(insert(table), rows)
        return
    columns = [table.c[name] for name in names]
    processors: list[Callable[[Any], Any] | None] = [
        c.type.dialect_impl(dialect).bind_processor(dialect) for c in columns
    ]
    quoted = ", ".join(dialect.identifier_preparer.quote(name) for name in names)
    command = f"COPY {dialect.identifier_preparer.format_table(table)} ({quoted}) FROM STDIN"
    driver = conn.connection.driver_connection
    assert driver is not None
    with driver.cursor() as cursor, cursor.copy(command) as copy:
        for row in rows:
            copy.write_row(
                [
                    value if proc is None else proc(value)
                    for proc, value in zip(processors, (row[n] for n in names), strict=True)
                ]
            )
