"""Personal fields encrypted at rest, key rotation, phone blind index, and the keys CLI."""

from __future__ import annotations

import base64
import json
import logging
import stat
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from hub.alarms import service as alarms
from hub.cli import app
from hub.escalation.engine import EscalationContext, start_escalation
from hub.escalation.policy import ensure_default_policies
from hub.notify.replies import find_person
from hub.storage import crypto
from hub.storage.crypto import (
    DecryptionError,
    EncryptedColumnError,
    configure_keys,
    generate_key,
    load_or_create_demo_keys,
    phone_index,
)
from hub.storage.db import make_engine, make_sessionmaker, transaction
from hub.storage.migrate import current, head_revision, upgrade
from hub.storage.models import (
    AlarmTimelineEntry,
    Home,
    Notification,
    Relative,
    RelativeRole,
    Resident,
    Severity,
    StaffRole,
    StaffUser,
)
from tests.factories import T0, add_home
from tests.fixtures.databases import MakePgDatabase

runner = CliRunner()


def only(key: str) -> crypto.KeyRing:
    """A ring of this one key (not the process's)."""
    return crypto.KeyRing.from_keys([key])


KEY_A = generate_key()
KEY_B = generate_key()
PHONE = "+47 91 00 00 01"
# Every encrypted column, for raw SELECTs.
ENCRYPTED = (
    ("homes", "address"),
    ("residents", "label"),
    ("residents", "full_name"),
    ("relatives", "name"),
    ("relatives", "phone"),
    ("staff_users", "phone"),
    ("staff_users", "display_name"),
    ("staff_users", "totp_secret"),
    ("notifications", "to_number"),
    ("notifications", "body"),
)


@pytest.fixture(autouse=True)
def _restore_key_ring(restore_key_ring: None) -> None:
    """Each test configures keys for the process; the previous ring is put back afterwards."""


def add_people(factory: sessionmaker[Session]) -> tuple[int, int]:
    """A home (address, resident) plus a relative and a nurse with phones: (relative, staff) ids."""
    add_home(factory, devices=())
    with transaction(factory) as session:
        resident = session.scalars(select(Resident)).one()
        resident.full_name = "Kari Nordmann"
        relative = Relative(
            resident_id=resident.id,
            name="Ola Nordmann",
            phone=PHONE,
            role=RelativeRole.ACTING,
            created_at=T0,
        )
        nurse = StaffUser(
            username="nina",
            display_name="Nina S.",
            role=StaffRole.NURSE,
            password_hash="x",
            phone="90000002",
            created_at=T0,
        )
        session.add_all([relative, nurse])
        session.flush()
        return relative.id, nurse.id


def add_secret_and_outbox(factory: sessionmaker[Session]) -> None:
    """After ``add_people``: the nurse enrols TOTP, and a fall's escalation queues an SMS to an
    informed relative (written by the engine's batched outbox INSERT)."""
    with transaction(factory) as session:
        nurse = session.scalars(select(StaffUser)).one()
        nurse.totp_secret = "JBSWY3DPEHPK3PXP"
        resident = session.scalars(select(Resident)).one()
        session.add(
            Relative(
                resident_id=resident.id,
                name="Per Nordmann",
                phone="+4791000009",
                priority=2,
                role=RelativeRole.INFORMED,
                created_at=T0,
            )
        )
        session.flush()
        ensure_default_policies(session, T0)
        alarm, _created = alarms.open_or_join(
            session,
            now=T0,
            resident_id=resident.id,
            home_id=resident.home_id,
            type="fall",
            severity=Severity.RED,
            summary="fall",
        )
        start_escalation(session, alarm, now=T0, ctx=EscalationContext(ZoneInfo("Europe/Oslo"), ""))
        alarms.add_note(
            session,
            alarm.id,
            now=T0,
            actor="staff:nina",
            kind="note",
            detail={"note": "Per Nordmann called back", "by": "nina"},
        )


def raw_values(engine: Engine) -> dict[str, str]:
    """``table.column`` → the stored text of every non-NULL encrypted value, bypassing the ORM."""
    found: dict[str, str] = {}
    with engine.connect() as connection:
        for table, column in ENCRYPTED:
            for (value,) in connection.execute(text(f"SELECT {column} FROM {table}")):
                if value is not None:
                    found.setdefault(f"{table}.{column}", value)
    return found


def test_personal_fields_are_stored_encrypted_and_read_back_in_clear(
    engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    configure_keys([KEY_A])
    add_people(session_factory)
    add_secret_and_outbox(session_factory)

    raw = raw_values(engine)
    assert set(raw) == {f"{t}.{c}" for t, c in ENCRYPTED}
    for name, value in raw.items():
        assert value.startswith("v2:"), name
    joined = " ".join(raw.values())
    for clear in (
        "Storgata",
        "Kari",
        "Nordmann",
        "91 00",
        "91000001",
        "90000002",
        "91000009",
        "Nina S.",
        "JBSWY3DP",
    ):
        assert clear not in joined
    assert crypto.decrypt_value(raw["relatives.name"], ring=only(KEY_A)) == "Ola Nordmann"

    with session_factory() as session:
        resident = session.scalars(select(Resident)).one()
        relative = session.scalars(select(Relative).order_by(Relative.id)).first()
        assert relative is not None
        nurse = session.scalars(select(StaffUser)).one()
        home = session.get(Home, "h1")
        assert home is not None and home.address == "Storgata 1"
        assert (resident.label, resident.full_name) == ("Kari N.", "Kari Nordmann")
        assert (relative.name, relative.phone, nurse.phone) == ("Ola Nordmann", PHONE, "90000002")
        assert (nurse.display_name, nurse.totp_secret) == ("Nina S.", "JBSWY3DPEHPK3PXP")
        sms = session.scalars(select(Notification)).one()
        assert sms.to_number == "+4791000009" and "Kari N." in sms.body
        told = session.scalars(
            select(AlarmTimelineEntry).where(AlarmTimelineEntry.kind == "notification")
        ).one()
        # the timeline names the message's person by id only (the portal looks the name up)
        assert "name" not in told.detail and told.detail["recipient"].startswith("relative:")
        note = session.scalars(
            select(AlarmTimelineEntry).where(AlarmTimelineEntry.kind == "note")
        ).one()
        assert note.detail["note"] == "Per Nordmann called back"  # read back in clear
    # ... but stored encrypted inside the timeline's JSON, the rest of it plain
    with engine.connect() as connection:
        stored = connection.execute(
            text("SELECT detail FROM alarm_timeline WHERE kind = 'note'")
        ).scalar_one()
    stored_json = stored if isinstance(stored, dict) else json.loads(stored)
    assert stored_json["note"].startswith("v2:") and stored_json["by"] == "nina"
    assert "Per Nordmann" not in json.dumps(stored_json)


def test_without_keys_values_are_marked_clear_and_a_warning_is_logged(
    engine: Engine, session_factory: sessionmaker[Session], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="hub.storage.crypto"):
        configure_keys([])
    assert "UNENCRYPTED" in caplog.text

    add_people(session_factory)

    raw = raw_values(engine)
    assert raw["relatives.name"] == "v0:Ola Nordmann"
    assert all(value.startswith("v0:") for value in raw.values())
    with session_factory() as session:
        assert session.scalars(select(Relative.name)).one() == "Ola Nordmann"
        assert find_person(session, "91000001") is not None


def test_legacy_values_without_a_prefix_are_read_as_clear_text(
    engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    configure_keys([KEY_A])
    add_people(session_factory)
    with engine.begin() as connection:
        connection.execute(text("UPDATE relatives SET name = 'Ola Legacy'"))
    with session_factory() as session:
        assert session.scalars(select(Relative.name)).one() == "Ola Legacy"


def test_the_empty_string_is_stored_as_empty_and_counts_as_current() -> None:
    """Nothing to hide in "" (a token's length would tell it): stored as ``v0:`` with or without
    keys, read back as "", and ``keys rotate`` leaves it alone."""
    ring = configure_keys([KEY_A])
    assert crypto.encrypt_value("") == "v0:"
    assert crypto.decrypt_value("v0:") == ""
    assert crypto.is_current("v0:", ring)
    assert crypto.encrypt_value("x").startswith("v2:")


def test_a_tampered_ciphertext_is_a_clear_error_naming_the_column(
    engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    configure_keys([KEY_A])
    add_people(session_factory)
    stored = raw_values(engine)["relatives.name"]
    flipped = "A" if stored[40] != "A" else "B"
    tampered = stored[:40] + flipped + stored[41:]
    with engine.begin() as connection:
        connection.execute(text("UPDATE relatives SET name = :v"), {"v": tampered})

    with session_factory() as session, pytest.raises(DecryptionError) as caught:
        session.scalars(select(Relative)).one()
    assert "relatives.name" in str(caught.value)
    assert "not encrypted with any configured data key, or altered" in str(caught.value)
    assert isinstance(caught.value.__cause__, InvalidTag)


def test_each_value_gets_its_own_nonce() -> None:
    """The same text twice gives two different stored values (a fresh random nonce each), and
    both open."""
    ring = only(KEY_A)
    first, second = (crypto.encrypt_value("Kari N.", ring) for _ in range(2))
    assert first != second
    raw = [base64.urlsafe_b64decode(v[3:]) for v in (first, second)]
    assert raw[0][:4] == raw[1][:4]  # the same key id
    assert raw[0][4:16] != raw[1][4:16]  # another nonce
    assert {crypto.decrypt_value(v, ring=ring) for v in (first, second)} == {"Kari N."}


@pytest.mark.parametrize(
    "stored", ["v2:", "v2:not base64!", "v2:AAAA", "v2:" + "A" * 40, "v2:" + "A" * 41]
)
def test_a_malformed_or_cut_short_value_is_a_clear_error(stored: str) -> None:
    with pytest.raises(DecryptionError, match=r"residents\.label.*or altered"):
        crypto.decrypt_value(stored, "residents.label", only(KEY_A))
    assert not crypto.is_current(stored, only(KEY_A))


def test_fernet_values_from_before_aes_gcm_are_read_and_rotated_to_it(
    db_url: str,
    engine: Engine,
    session_factory: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Until 2026-11-25 values were written as ``v1:<Fernet token>``; they stay readable under
    the same configured key (the append-only timeline keeps them for good), an altered one is
    refused, and ``keys rotate`` rewrites the others as ``v2:``."""
    configure_keys([KEY_A])
    add_people(session_factory)
    legacy = "v1:" + Fernet(KEY_A).encrypt(b"Ola Fernet").decode()
    with engine.begin() as connection:
        connection.execute(text("UPDATE relatives SET name = :v"), {"v": legacy})
    with session_factory() as session:
        assert session.scalars(select(Relative.name)).one() == "Ola Fernet"
    assert not crypto.is_current(legacy, crypto.key_ring())
    altered = legacy[:40] + ("A" if legacy[40] != "A" else "B") + legacy[41:]
    with pytest.raises(DecryptionError, match="or altered") as caught:
        crypto.decrypt_value(altered, "relatives.name")
    assert isinstance(caught.value.__cause__, InvalidToken)

    monkeypatch.setenv("CAREHUB_DATABASE__URL", db_url)
    monkeypatch.setenv("CAREHUB_SECURITY__DATA_KEYS", json.dumps([KEY_A]))
    result = runner.invoke(app, ["keys", "rotate"])
    assert result.exit_code == 0, result.output
    assert "Re-encrypted 1 rows" in result.output
    stored = raw_values(engine)["relatives.name"]
    assert stored.startswith("v2:") and crypto.is_current(stored, only(KEY_A))
    with session_factory() as session:
        assert session.scalars(select(Relative.name)).one() == "Ola Fernet"


def test_a_value_under_an_unknown_key_is_refused_not_returned_as_garbage(
    session_factory: sessionmaker[Session],
) -> None:
    configure_keys([KEY_A])
    add_people(session_factory)
    configure_keys([KEY_B])
    with session_factory() as session, pytest.raises(DecryptionError, match=r"residents\.label"):
        session.scalars(select(Resident)).one()


def test_rotate_reencrypts_everything_under_the_new_key_and_is_idempotent(
    db_url: str,
    engine: Engine,
    session_factory: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    configure_keys([KEY_A])
    relative_id, nurse_id = add_people(session_factory)
    before = raw_values(engine)

    # The new key goes first; the old one still decrypts until the rotation is done.
    monkeypatch.setenv("CAREHUB_DATABASE__URL", db_url)
    monkeypatch.setenv("CAREHUB_SECURITY__DATA_KEYS", json.dumps([KEY_B, KEY_A]))
    result = runner.invoke(app, ["keys", "rotate", "--batch-size", "1"])
    assert result.exit_code == 0, result.output
    assert "Re-encrypted 4 rows and rebuilt 2 phone indexes" in result.output

    after = raw_values(engine)
    for name, value in after.items():
        assert value != before[name]
        assert value.startswith("v2:")
        crypto.decrypt_value(value, name, only(KEY_B))  # no DecryptionError: B alone reads it
        with pytest.raises(DecryptionError):
            crypto.decrypt_value(value, name, only(KEY_A))
    assert crypto.decrypt_value(after["relatives.phone"], ring=only(KEY_B)) == PHONE

    again = runner.invoke(app, ["keys", "rotate"])
    assert again.exit_code == 0, again.output
    assert "Re-encrypted 0 rows and rebuilt 0 phone indexes" in again.output
    assert raw_values(engine) == after

    # The old key can go: reads and phone lookups work with B alone.
    configure_keys([KEY_B])
    with session_factory() as session:
        relative = find_person(session, "91000001")
        nurse = find_person(session, "+4790000002")
        assert relative is not None and relative.ids == (relative_id,)
        assert nurse is not None and nurse.kind == "staff" and nurse.ids == (nurse_id,)
        assert session.scalars(select(Relative.name)).one() == "Ola Nordmann"


def test_rotate_refuses_to_run_without_keys(
    db_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAREHUB_DATABASE__URL", db_url)
    monkeypatch.delenv("CAREHUB_SECURITY__DATA_KEYS", raising=False)
    result = runner.invoke(app, ["keys", "rotate"])
    assert result.exit_code == 2
    assert "No data keys configured" in result.output


@pytest.mark.parametrize(
    "number", ["+47 91 00 00 01", "+4791000001", "91000001", "0047 91 00 00 01", "+47-910-00-001"]
)
def test_a_relative_is_found_by_phone_in_any_format(
    session_factory: sessionmaker[Session], number: str
) -> None:
    configure_keys([KEY_A])
    relative_id, _nurse_id = add_people(session_factory)
    with session_factory() as session:
        person = find_person(session, number)
        assert person is not None
        assert (person.kind, person.ids) == ("relative", (relative_id,))
        assert find_person(session, "91000009") is None


def test_the_phone_index_follows_a_changed_number_and_a_rotated_key(
    session_factory: sessionmaker[Session],
) -> None:
    configure_keys([KEY_A])
    _relative_id, nurse_id = add_people(session_factory)
    with transaction(session_factory) as session:
        nurse = session.get(StaffUser, nurse_id)
        assert nurse is not None
        nurse.phone = "+47 95 55 55 55"
    with session_factory() as session:
        assert find_person(session, "90000002") is None
        found = find_person(session, "95555555")
        assert found is not None and found.ids == (nurse_id,)

    # After a restart with [B, A], rows not yet re-indexed are still found (A's index is tried).
    configure_keys([KEY_B, KEY_A])
    with session_factory() as session:
        assert find_person(session, "95555555") is not None
        stored = session.scalars(select(StaffUser.phone_index)).one()
        assert stored == phone_index("95555555", crypto.KeyRing.from_keys([KEY_A]))


def test_sql_comparisons_on_an_encrypted_column_are_refused() -> None:
    with pytest.raises(EncryptedColumnError):
        select(Relative).where(Relative.phone == PHONE)
    with pytest.raises(EncryptedColumnError):
        select(Resident).order_by(Resident.label.desc())
    select(StaffUser).where(StaffUser.phone.is_not(None))  # NULL checks are fine


def test_a_malformed_key_is_refused_with_its_position() -> None:
    with pytest.raises(ValueError, match=r"data_keys\[2\]"):
        configure_keys([KEY_A, "not-a-key"])


def test_the_demo_key_file_is_created_once_and_private(tmp_path: Path) -> None:
    path = tmp_path / "var" / "data-keys.json"
    keys = load_or_create_demo_keys(path)
    assert len(keys) == 1 and Fernet(keys[0])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_demo_keys(path) == keys


def test_keys_generate_prints_a_fernet_key() -> None:
    result = runner.invoke(app, ["keys", "generate"])
    assert result.exit_code == 0, result.output
    Fernet(result.output.strip())


@pytest.fixture(
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
    ids=["sqlite", "postgres"],
)
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'legacy.db'}"
    make_pg_database: MakePgDatabase = request.getfixturevalue("make_pg_database")
    return make_pg_database()


def test_rows_from_before_0005_stay_readable_findable_and_rotate_to_encrypted(
    empty_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    upgrade(empty_url, "0004")
    engine = make_engine(empty_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                text("INSERT INTO zones (id, name, created_at) VALUES (1, 'Ørje', :t)"), {"t": T0}
            )
            connection.execute(
                text(
                    "INSERT INTO homes (id, zone_id, address, created_at) VALUES ('h1', 1, :a, :t)"
                ),
                {"a": "Storgata 1", "t": T0},
            )
            connection.execute(
                text(
                    "INSERT INTO residents (id, home_id, zone_id, label, full_name, created_at) "
                    "VALUES (1, 'h1', 1, 'Kari N.', 'Kari Nordmann', :t)"
                ),
                {"t": T0},
            )
            connection.execute(
                text(
                    "INSERT INTO relatives (id, resident_id, name, phone, priority, role, "
                    "language, sms_opt_out, created_at) "
                    "VALUES (1, 1, 'Ola', '91 00 00 01', 1, 'acting', 'nb', false, :t)"
                ),
                {"t": T0},
            )
    finally:
        engine.dispose()

    upgrade(empty_url)
    assert current(empty_url) == head_revision()

    configure_keys([KEY_A])
    engine = make_engine(empty_url)
    try:
        factory = make_sessionmaker(engine)
        with factory() as session:
            assert session.scalars(select(Resident.full_name)).one() == "Kari Nordmann"
            person = find_person(session, "+4791000001")
            assert person is not None and person.name == "Ola"

        monkeypatch.setenv("CAREHUB_DATABASE__URL", empty_url)
        monkeypatch.setenv("CAREHUB_SECURITY__DATA_KEYS", json.dumps([KEY_A]))
        result = runner.invoke(app, ["keys", "rotate"])
        assert result.exit_code == 0, result.output
        assert all(v.startswith("v2:") for v in raw_values(engine).values())
        with factory() as session:
            assert find_person(session, "91000001") is not None
            assert session.scalars(select(Relative.phone_index)).one() == phone_index(PHONE)
    finally:
        engine.dispose()
