"""Engines and sessions for SQLite and PostgreSQL, with the settings each needs."""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker


def normalise_url(url: str) -> str:
    """Use psycopg 3 for ``postgresql://`` URLs."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """Create an engine; SQLite gets WAL, a busy timeout and foreign keys, its folder is created."""
    url = normalise_url(url)
    parsed = make_url(url)
    kwargs: dict[str, Any] = {"echo": echo, "future": True}
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {
            "check_same_thread": False,
            "timeout": 30,
            "factory": _QueuedWriterConnection,
        }
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "before_cursor_execute", _take_write_turn)
        return engine
    kwargs["pool_pre_ping"] = True
    if parsed.get_backend_name() == "postgresql":
        # a network outage must fail a health check or a batch in seconds, not hang it
        # No server-side prepared statements (psycopg prepares a query after 5 runs): a prepared
        # statement may switch to a generic plan, and one planned on the statistics of a table
        # that filled up seconds ago (a burst of alarms) made the tick's
        # "UPDATE alarms … WHERE id = ANY(…) AND status = …" walk every open alarm by status.
        # Planned each time, it uses the key. ADR 16.
        kwargs["connect_args"] = {"connect_timeout": 5, "prepare_threshold": None}
    return create_engine(url, **kwargs)


# -- SQLite writers queue in the process ------------------------------------------------------
# SQLite has one writer. A connection that finds the write lock taken sleeps in SQLite's busy
# handler (1, 2, 5 … 100 ms between tries) and can lose the race again and again to a thread that
# writes every few milliseconds (the ingest at 1,000 events/s): the sender's claim of a fresh
# alarm SMS waited hundreds of ms that way. So writers of one database file take turns on a
# Python lock, which wakes the next writer the moment a commit ends. Reads never wait for it
# (WAL). Other processes still meet SQLite's own lock and busy timeout.
_WRITE = re.compile(r"\s*(INSERT|UPDATE|DELETE|REPLACE|CREATE|DROP|ALTER)\b", re.IGNORECASE)
_TURN_WAIT_S = 30.0  # as SQLite's busy timeout; after that the writer goes ahead unqueued


class _WriteTurn:
    """Whose turn it is to write one database file: held by a connection, not a thread, so any
    thread may end it; a writer waits at most ``_TURN_WAIT_S`` and then proceeds without it
    (SQLite's own lock still decides), so a bug can never deadlock the hub here."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._holder: object | None = None

    def acquire(self, who: object) -> bool:
        with self._cond:
            if not self._cond.wait_for(lambda: self._holder is None, _TURN_WAIT_S):
                return False
            self._holder = who
            return True

    def release(self, who: object) -> None:
        with self._cond:
            if self._holder is who:
                self._holder = None
                self._cond.notify()


_write_turns: dict[str, _WriteTurn] = {}
_write_turns_guard = threading.Lock()


def _write_turn(database: str) -> _WriteTurn:
    with _write_turns_guard:
        return _write_turns.setdefault(database, _WriteTurn())


class _QueuedWriterConnection(sqlite3.Connection):
    """A sqlite3 connection that holds its file's write turn from its first write to the end of
    the transaction (commit, rollback or close)."""

    def __init__(self, database: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(database, *args, **kwargs)
        self.write_turn = _write_turn(str(Path(str(database)).resolve()))
        self.holds_turn = False

    def take_turn(self) -> None:
        if not self.holds_turn:
            self.holds_turn = self.write_turn.acquire(self)

    def _end_turn(self) -> None:
        if self.holds_turn:
            self.holds_turn = False
            self.write_turn.release(self)

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self._end_turn()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self._end_turn()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._end_turn()


def _take_write_turn(
    conn: Any, _cursor: Any, statement: str, _params: Any, _context: Any, _many: bool
) -> None:
    dbapi = conn.connection.dbapi_connection
    if isinstance(dbapi, _QueuedWriterConnection) and _WRITE.match(statement):
        dbapi.take_turn()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # FULL: the WAL is synced at every commit. Ingest acknowledges a message once it is
    # committed (ADR 1), so a commit must survive a power cut too, not only a process crash
    # (NORMAL would lose the last acknowledged commits then) — ADR 12.
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session in one transaction: commit on success, roll back on error."""
    with factory() as session, session.begin():
        yield session


def is_postgres(engine: Engine | Connection) -> bool:
    return engine.dialect.name == "postgresql"
