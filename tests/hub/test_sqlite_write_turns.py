"""SQLite writers of one file take turns in the process (hub.storage.db): a waiting writer is
woken by the commit that ends the turn, a rollback or close ends it too, and a turn never blocks
forever."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from hub.storage import db
from hub.storage.db import make_engine


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    made = make_engine(f"sqlite:///{tmp_path / 'turns.db'}")
    with made.begin() as conn:
        conn.execute(text("CREATE TABLE t (n INTEGER)"))
    return made


def _turn_of(engine: Engine) -> db._WriteTurn:
    with engine.connect() as conn:
        dbapi = conn.connection.dbapi_connection
        assert isinstance(dbapi, db._QueuedWriterConnection)
        return dbapi.write_turn


def test_a_second_writer_waits_for_the_turn_and_goes_as_soon_as_the_first_commits(
    engine: Engine,
) -> None:
    order: list[str] = []
    first_wrote = threading.Event()
    second_waiting = threading.Event()
    turn = _turn_of(engine)
    real_acquire = turn.acquire

    def acquire(who: object) -> bool:
        if first_wrote.is_set():
            second_waiting.set()
        return real_acquire(who)

    turn.acquire = acquire  # type: ignore[method-assign]

    def second() -> None:
        first_wrote.wait(5)
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO t VALUES (2)"))
            order.append("second wrote")

    thread = threading.Thread(target=second)
    thread.start()
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO t VALUES (1)"))
        first_wrote.set()
        assert second_waiting.wait(5)
        # the second writer is queued on the turn, not inside SQLite: it has not written
        assert order == []
        order.append("first commits")
    thread.join(10)
    assert order == ["first commits", "second wrote"]
    with engine.connect() as conn:
        assert conn.execute(text("SELECT n FROM t ORDER BY rowid")).scalars().all() == [1, 2]


def test_rollback_and_close_end_the_turn(engine: Engine) -> None:
    turn = _turn_of(engine)
    with engine.connect() as conn:
        conn.execute(text("INSERT INTO t VALUES (1)"))
        assert turn._holder is not None
        conn.rollback()
        assert turn._holder is None
        conn.execute(text("INSERT INTO t VALUES (2)"))
        assert turn._holder is not None
    # returned to the pool: reset (rollback) ends it
    assert turn._holder is None
    raw = engine.raw_connection()
    raw.cursor().execute("INSERT INTO t VALUES (3)")
    dbapi = raw.dbapi_connection
    assert isinstance(dbapi, db._QueuedWriterConnection)
    dbapi.take_turn()
    raw.invalidate()  # closes the DBAPI connection
    assert turn._holder is None


def test_reads_never_take_the_turn(engine: Engine) -> None:
    turn = _turn_of(engine)
    with engine.connect() as conn:
        conn.execute(text("SELECT count(*) FROM t"))
        assert turn._holder is None


def test_a_turn_that_is_never_ended_does_not_block_a_writer_forever(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "_TURN_WAIT_S", 0.2)
    turn = _turn_of(engine)
    assert turn.acquire("a leaked holder")
    with engine.begin() as conn:  # waits 0.2 s, then writes under SQLite's own lock
        conn.execute(text("INSERT INTO t VALUES (1)"))
    turn.release("a leaked holder")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM t")).scalar() == 1


def test_every_sqlite_connection_syncs_each_commit_to_disk(engine: Engine) -> None:
    """Ingest acknowledges a message once committed (ADR 1), so a commit must survive a power
    cut: WAL mode with ``synchronous=FULL`` (2) on every connection the hub opens (ADR 12)."""
    with engine.connect() as first, engine.connect() as second:
        for conn in (first, second):
            assert conn.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"
            assert conn.execute(text("PRAGMA synchronous")).scalar_one() == 2
