"""Writing many rows in one go: COPY on PostgreSQL, one executemany INSERT on SQLite; ids
reserved ahead; id sets as one array parameter; inserts that skip conflicts (``insert_new``) and
updates by key (``update_rows``) as one statement from arrays on PostgreSQL.

psycopg sends an executemany as one statement per row (pipelined), and SQLAlchemy prepares the
parameters of each row: at the 20,000 outbox rows and 30,000 timeline rows of 10,000 escalation
steps that per-row work is most of a tick. ``COPY … FROM STDIN`` streams the rows in one
command instead; on SQLite the INSERT goes to the driver with its parameters already prepared.
Every value still goes through its column's bind processing first (encryption of personal
fields, UTC times, JSON), exactly as SQLAlchemy's INSERT would do it; only the transport
differs. Equal values of a column whose processing always gives the same result (a time, an
enum) are processed once per call. Nothing is read back: a caller that needs the new rows' ids
reserves them first (``reserve_ids``) and writes them in the rows.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Sequence
from typing import Any

from sqlalchemy import (
    JSON,
    ColumnElement,
    Table,
    any_,
    bindparam,
    cast,
    func,
    insert,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY, REGCLASS
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import QueryableAttribute, Session

from hub.storage.db import is_postgres

# Below this many rows the plain INSERT is as quick and COPY not worth its own round trip.
COPY_MIN_ROWS = 50

Processor = Callable[[Any], Any]


def append_rows(
    session: Session,
    table: Table,
    rows: Sequence[dict[str, Any]],
    *,
    shared: Collection[str] = (),
) -> None:
    """Insert ``rows`` (all with the same keys) into ``table`` in the session's transaction.

    ``shared`` names encrypted columns whose equal values in this call may be stored as one
    ciphertext (a phone number sent to many times in one batch: its rows already say who it
    is; a text is never shared). Other encrypted values are encrypted one by one.
    """
    if not rows:
        return
    conn = session.connection()
    dialect = conn.dialect
    names = list(rows[0])
    # a Python-side default of a column the rows leave out: only the INSERT would apply it
    defaulted = any(
        c.default is not None and not c.primary_key for c in table.c if c.name not in names
    )
    if defaulted or len(rows) < COPY_MIN_ROWS:
        conn.execute(insert(table), rows)
        return
    processed = _processed(table, names, rows, dialect, shared)
    preparer = dialect.identifier_preparer
    quoted = ", ".join(preparer.quote(name) for name in names)
    if not is_postgres(conn):
        # SQLAlchemy's INSERT, its parameters prepared above: no per-row work left to it
        marks = ", ".join("?" for _ in names)
        sql = f"INSERT INTO {preparer.format_table(table)} ({quoted}) VALUES ({marks})"
        conn.exec_driver_sql(sql, [tuple(values) for values in processed])
        return
    command = f"COPY {preparer.format_table(table)} ({quoted}) FROM STDIN"
    driver = conn.connection.driver_connection
    assert driver is not None
    with driver.cursor() as cursor, cursor.copy(command) as copy:
        for values in processed:
            copy.write_row(values)


def insert_new(
    session: Session,
    table: Table,
    rows: Sequence[dict[str, Any]],
    *,
    unique: Sequence[str],
    returning: Sequence[str],
) -> list[tuple[Any, ...]]:
    """Insert ``rows`` (all with the same keys), skipping each that conflicts on the unique
    columns ``unique``; returns the ``returning`` columns of the rows inserted.

    PostgreSQL: one ``INSERT … SELECT … FROM unnest(<one array per column>) ON CONFLICT DO
    NOTHING RETURNING …``. Its text is the same short one whatever the number of rows, so
    psycopg converts it once and caches it; SQLAlchemy's multi-row VALUES for the same rows is a
    text with thousands of placeholders that psycopg parses in Python on every batch. Each
    value goes through its column's bind processing first, as in ``append_rows``.
    SQLite: SQLAlchemy's ``INSERT … ON CONFLICT DO NOTHING RETURNING`` (executemany).
    """
    if not rows:
        return []
    conn = session.connection()
    dialect = conn.dialect
    names = list(rows[0])
    if not is_postgres(conn):
        stmt = (
            sqlite_insert(table)
            .on_conflict_do_nothing(index_elements=list(unique))
            .returning(*(table.c[name] for name in returning))
        )
        return [tuple(row) for row in conn.execute(stmt, list(rows))]
    params = _column_arrays(table, names, rows, dialect)
    result = conn.exec_driver_sql(_unnest_insert(table, names, unique, returning, dialect), params)
    return [tuple(row) for row in result]


def update_rows(
    session: Session,
    table: Table,
    rows: Sequence[dict[str, Any]],
    *,
    key: str,
    keep_when_none: Collection[str] = (),
) -> None:
    """Update one row of ``table`` per entry of ``rows`` (all with the same keys), found by its
    ``key`` column (each key once); the other keys are the new values. A column named in
    ``keep_when_none`` keeps its value where the new one is None (COALESCE).

    PostgreSQL: one ``UPDATE … FROM unnest(<one array per column>)``. With psycopg an
    executemany is one statement per row (pipelined, but a round of the server's executor each):
    200 devices took 11-14 ms that way and take 3-5 ms so (ADR 16, amended). SQLite: the same
    UPDATE as an executemany, in the process. Each value goes through its column's bind
    processing first, as in ``append_rows``.
    """
    if not rows:
        return
    conn = session.connection()
    dialect = conn.dialect
    names = [key, *(name for name in rows[0] if name != key)]
    if len({row[key] for row in rows}) != len(rows):
        raise ValueError(f"update_rows({table.fullname}): a {key} named twice")
    keep = frozenset(keep_when_none)
    if not is_postgres(conn):
        # the values through their columns' processing here, then the driver's executemany:
        # SQLAlchemy's own parameter work per row cost more than the UPDATE itself
        params = [(*values[1:], values[0]) for values in _processed(table, names, rows, dialect)]
        conn.exec_driver_sql(_executemany_update(table, names, keep, dialect), params)
        return
    arrays = _column_arrays(table, names, rows, dialect)
    conn.exec_driver_sql(_unnest_update(table, names, keep, dialect), arrays)


def _column_arrays(
    table: Table, names: Sequence[str], rows: Sequence[dict[str, Any]], dialect: Dialect
) -> dict[str, Any]:
    """The parameters of an unnest statement: one array per column (``c0``, ``c1`` …, in the
    order of ``names``), each value through its column's bind processing. A JSON column's
    values go as one JSON array text instead (``_array_casts``)."""
    params: dict[str, Any] = {}
    for k, (name, process) in enumerate(
        zip(names, _processors(table, names, dialect, ()), strict=True)
    ):
        values = [row[name] for row in rows]
        if _is_json(table, name):
            serialize = getattr(dialect, "_json_serializer", None) or json.dumps
            params[f"c{k}"] = serialize(values)
        else:
            params[f"c{k}"] = values if process is None else [process(v) for v in values]
    return params


def _is_json(table: Table, name: str) -> bool:
    return isinstance(table.c[name].type, JSON)


def _array_casts(table: Table, names: Sequence[str], dialect: Dialect) -> str:
    """``CAST(%(c0)s AS <type>[]), …``: the arrays of ``_column_arrays`` as unnest's arguments.

    A JSON column's array is built on the server from one JSON array text, in order: as a
    ``json[]`` parameter each document would be quoted and escaped into an array literal and
    parsed out of it again. For the rule states (about 2 KB each) that made the ingest's
    ``rule_states`` UPDATE three times slower (128 rows: 17-19 ms against 6 ms)."""
    casts = []
    for k, name in enumerate(names):
        kind = table.c[name].type.compile(dialect=dialect)
        if _is_json(table, name):
            elements = "jsonb_array_elements" if kind == "JSONB" else "json_array_elements"
            casts.append(
                f"ARRAY(SELECT e FROM {elements}(CAST(%(c{k})s AS {kind})) "
                f"WITH ORDINALITY AS t(e, n) ORDER BY n)"
            )
        else:
            casts.append(f"CAST(%(c{k})s AS {ARRAY(table.c[name].type).compile(dialect=dialect)})")
    return ", ".join(casts)


_EXECUTEMANY_UPDATES: dict[tuple[str, tuple[str, ...], frozenset[str]], str] = {}


def _executemany_update(
    table: Table, names: Sequence[str], keep_when_none: frozenset[str], dialect: Dialect
) -> str:
    """The UPDATE of ``update_rows`` on SQLite (built once per shape): the new values as
    positional parameters in the order of ``names[1:]``, then the key (``names[0]``)."""
    cache_key = (table.fullname, tuple(names), keep_when_none)
    sql = _EXECUTEMANY_UPDATES.get(cache_key)
    if sql is None:
        quote = dialect.identifier_preparer.quote
        sets = ", ".join(
            f"{quote(name)} = coalesce(?, {quote(name)})"
            if name in keep_when_none
            else f"{quote(name)} = ?"
            for name in names[1:]
        )
        sql = _EXECUTEMANY_UPDATES[cache_key] = (
            f"UPDATE {dialect.identifier_preparer.format_table(table)} SET {sets} "
            f"WHERE {quote(names[0])} = ?"
        )
    return sql


_UNNEST_UPDATES: dict[tuple[str, tuple[str, ...], frozenset[str]], str] = {}


def _unnest_update(
    table: Table, names: Sequence[str], keep_when_none: frozenset[str], dialect: Dialect
) -> str:
    """The statement text of ``update_rows`` on PostgreSQL (built once per shape); the first
    name is the key."""
    cache_key = (table.fullname, tuple(names), keep_when_none)
    sql = _UNNEST_UPDATES.get(cache_key)
    if sql is None:
        quote = dialect.identifier_preparer.quote
        target = dialect.identifier_preparer.format_table(table)
        arrays = _array_casts(table, names, dialect)
        sets = ", ".join(
            f"{quote(name)} = COALESCE(v.{quote(name)}, {target}.{quote(name)})"
            if name in keep_when_none
            else f"{quote(name)} = v.{quote(name)}"
            for name in names[1:]
        )
        sql = _UNNEST_UPDATES[cache_key] = (
            f"UPDATE {target} SET {sets} FROM unnest({arrays}) "
            f"AS v({', '.join(quote(name) for name in names)}) "
            f"WHERE {target}.{quote(names[0])} = v.{quote(names[0])}"
        )
    return sql


_UNNEST_INSERTS: dict[tuple[str, tuple[str, ...], tuple[str, ...], tuple[str, ...]], str] = {}


def _unnest_insert(
    table: Table,
    names: Sequence[str],
    unique: Sequence[str],
    returning: Sequence[str],
    dialect: Dialect,
) -> str:
    """The statement text of ``insert_new`` on PostgreSQL (built once per shape)."""
    key = (table.fullname, tuple(names), tuple(unique), tuple(returning))
    sql = _UNNEST_INSERTS.get(key)
    if sql is None:
        quote = dialect.identifier_preparer.quote
        arrays = _array_casts(table, names, dialect)
        sql = _UNNEST_INSERTS[key] = (
            f"INSERT INTO {dialect.identifier_preparer.format_table(table)} "
            f"({', '.join(quote(name) for name in names)}) SELECT * FROM unnest({arrays}) "
            f"ON CONFLICT ({', '.join(quote(name) for name in unique)}) DO NOTHING "
            f"RETURNING {', '.join(quote(name) for name in returning)}"
        )
    return sql


def _processed(
    table: Table,
    names: Sequence[str],
    rows: Sequence[dict[str, Any]],
    dialect: Dialect,
    shared: Collection[str] = (),
) -> list[list[Any]]:
    """Each row's values in the order of ``names``, each through its column's bind processing
    (``_processors``): what the driver is handed."""
    processors = [
        (k, process)
        for k, process in enumerate(_processors(table, names, dialect, shared))
        if process is not None
    ]
    processed = []
    for row in rows:
        values = [row[name] for name in names]
        for k, process in processors:
            values[k] = process(values[k])
        processed.append(values)
    return processed


def _processors(
    table: Table, names: Sequence[str], dialect: Dialect, shared: Collection[str]
) -> list[Processor | None]:
    """Each column's bind processing (None where there is none), as SQLAlchemy would apply it;
    a deterministic one (a time, an enum) is done once per distinct value of the call."""
    out: list[Processor | None] = []
    for name in names:
        column = table.c[name]
        bind = column.type.dialect_impl(dialect).bind_processor(dialect)
        if bind is None:
            out.append(None)
            continue
        # encrypting again gives another ciphertext; a JSON object is no key to remember
        once = getattr(column.type, "randomised", False) or isinstance(column.type, JSON)
        reusable = name in shared or not once
        out.append(_reusing(bind) if reusable else bind)
    return out


def _reusing(bind: Processor) -> Processor:
    """``bind`` processing each distinct value once, its result reused."""
    done: dict[Any, Any] = {}

    def process(value: Any) -> Any:
        try:
            return done[value]
        except KeyError:
            result = done[value] = bind(value)
            return result

    return process


def reserve_ids(session: Session, table: Table, count: int) -> list[int]:
    """``count`` new ids for ``table`` (an integer key named ``id``), to write in rows instead
    of reading the generated ones back.

    PostgreSQL draws them from the column's sequence, so concurrent writers never collide.
    SQLite has one writer and numbers a new row max(id) + 1: the caller must have written in
    this transaction already (it then holds the write lock until it commits), which is checked.
    """
    if count <= 0:
        return []
    name = table.fullname
    if is_postgres(session.get_bind()):
        # The sequence as a scalar subquery: looked up once per statement, not once per id
        # (``nextval(pg_get_serial_sequence(…))`` resolved the name 3,000 times for 3,000 ids,
        # five times slower).
        sequence = select(cast(func.pg_get_serial_sequence(name, "id"), REGCLASS))
        drawn = select(func.array_agg(func.nextval(sequence.scalar_subquery()))).select_from(
            func.generate_series(1, count)
        )
        return list(session.scalar(drawn) or ())
    driver = session.connection().connection.driver_connection
    if not getattr(driver, "in_transaction", False):
        raise RuntimeError(f"reserve_ids({name}) on SQLite before this transaction wrote")
    last = session.scalar(select(func.max(table.c.id))) or 0
    return list(range(last + 1, last + 1 + count))


def one_of(
    session: Session, column: ColumnElement[Any] | QueryableAttribute[Any], values: Sequence[Any]
) -> ColumnElement[bool]:
    """``column IN (values)``; on PostgreSQL ``column = ANY(:array)`` instead.

    An IN list of hundreds of ids is a statement text of thousands of characters, different
    for each count: psycopg converts such a text in Python every time (it caches only short
    ones). ``= ANY`` of one array parameter is the same short text whatever the count, so it
    is converted once (ADR 16)."""
    if is_postgres(session.get_bind()):
        return column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))
    return column.in_(values)
