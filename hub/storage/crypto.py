"""Personal fields encrypted at rest (AES-256-GCM; older Fernet values still read), phone blind
indexes, key rotation."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from cryptography.exceptions import InvalidTag
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import (
    JSON,
    Column,
    MetaData,
    Table,
    Text,
    event,
    func,
    select,
    type_coerce,
    update,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Mapper, Session, sessionmaker
from sqlalchemy.sql import operators
from sqlalchemy.types import TypeDecorator

logger = logging.getLogger(__name__)

# Stored forms (docs/decisions/0020-data-fields-under-aes-gcm.md):
# "v2:<url-safe base64 of key id (4) | nonce (12) | AES-256-GCM ciphertext and tag>" is written;
# "v1:<Fernet token>" was written until 2026-11-25 and is still read (the append-only timeline
# keeps such values for good); "v0:<clear text>" is written when no data key is configured.
# A value with no prefix was written before migration 0005 and is read as clear text.
PREFIX_ENCRYPTED: Final = "v2:"
PREFIX_FERNET: Final = "v1:"
PREFIX_CLEAR: Final = "v0:"
# HKDF "info" for the AES-256-GCM key (32 bytes) and its key id (4 bytes) derived from a data key.
AEAD_KEY_INFO: Final = b"carehub/data-aead/v1"
_KEY_ID_BYTES: Final = 4
_NONCE_BYTES: Final = 12
_TAG_BYTES: Final = 16
_UNOPENED: Final = "not encrypted with any configured data key, or altered"
# HKDF "info" for the phone blind-index key derived from each data key.
INDEX_KEY_INFO: Final = b"carehub/phone-index/v1"
# The blind-index key used when no data key is configured (and by migration 0005 for existing
# rows). It is public, so such an index is no more secret than the clear number beside it.
UNKEYED_INDEX_KEY: Final = b"carehub/phone-index/unkeyed"
NO_KEYS_WARNING: Final = (
    "NO DATA KEYS CONFIGURED: personal fields (names, phone numbers, addresses) are stored "
    "UNENCRYPTED. Set security.data_keys (CAREHUB_SECURITY__DATA_KEYS) outside demo/test use."
)
_PHONE_PUNCTUATION: Final = re.compile(r"[\s\-().]")


class DecryptionError(ValueError):
    """A stored personal field could not be decrypted (wrong keys, or altered ciphertext)."""

    def __init__(self, field_name: str, reason: str) -> None:
        super().__init__(f"cannot decrypt {field_name}: {reason}")
        self.field_name = field_name


class EncryptedColumnError(TypeError):
    """A SQL comparison or ordering on an encrypted column, which can never mean anything."""


@dataclass(frozen=True)
class KeyRing:
    """The configured data keys: the first encrypts, all decrypt; and their blind-index keys.

    Each data key (a Fernet key, as configured) gives an AES-256-GCM key and a 4-byte key id,
    both derived with HKDF; a ``v2:`` value names the key that opens it by that id. The Fernet
    form of the keys still opens ``v1:`` values."""

    keys: tuple[str, ...] = ()
    fernet: MultiFernet | None = None
    # key id → AES-GCM cipher, for every configured key
    aead: dict[bytes, AESGCM] = field(default_factory=dict)
    # the id of the first key: the one that encrypts
    primary_id: bytes | None = None
    # One HMAC key per data key, newest first.
    index_keys: tuple[bytes, ...] = ()

    @property
    def encrypts(self) -> bool:
        return self.primary_id is not None

    @classmethod
    def from_keys(cls, keys: Sequence[str]) -> KeyRing:
        """Build a ring; raises ``ValueError`` naming the position of a malformed key."""
        fernets: list[Fernet] = []
        index_keys: list[bytes] = []
        aead: dict[bytes, AESGCM] = {}
        ids: list[bytes] = []
        seen: dict[bytes, str] = {}
        for position, key in enumerate(keys, start=1):
            try:
                fernets.append(Fernet(key))
                raw = base64.urlsafe_b64decode(key.encode("ascii"))
            except (ValueError, TypeError) as exc:
                raise ValueError(
                    f"security.data_keys[{position}] is not a Fernet key "
                    "(32 url-safe base64-encoded bytes; make one with `carehub keys generate`)"
                ) from exc
            index_keys.append(_derive_index_key(raw))
            key_id, aead_key = _derive_aead_key(raw)
            if seen.setdefault(key_id, key) != key:
                # two different keys with the same 4-byte id (one chance in 2**32): refuse
                raise ValueError(
                    f"security.data_keys[{position}] has the same key id as an earlier key; "
                    "make another one with `carehub keys generate`"
                )
            aead.setdefault(key_id, AESGCM(aead_key))
            ids.append(key_id)
        if not fernets:
            return cls()
        return cls(
            keys=tuple(keys),
            fernet=MultiFernet(fernets),
            aead=aead,
            primary_id=ids[0],
            index_keys=tuple(index_keys),
        )


def _derive_aead_key(raw_data_key: bytes) -> tuple[bytes, bytes]:
    """(key id, AES-256-GCM key) of a data key."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32 + _KEY_ID_BYTES, salt=None, info=AEAD_KEY_INFO)
    derived = hkdf.derive(raw_data_key)
    return derived[32:], derived[:32]


def _derive_index_key(raw_data_key: bytes) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=INDEX_KEY_INFO)
    return hkdf.derive(raw_data_key)


@dataclass
class _State:
    ring: KeyRing = field(default_factory=KeyRing)
    configured: bool = False
    warned: bool = False


_state = _State()


def configure_keys(keys: Sequence[str]) -> KeyRing:
    """Set the process's key ring from ``settings.security.data_keys`` (newest first).

    Called once at start-up (hub runtime, portal, CLI). Without keys, personal fields are stored
    as ``v0:`` clear text and a loud warning is logged.
    """
    ring = KeyRing.from_keys(keys)
    _state.ring = ring
    _state.configured = True
    _state.warned = not ring.encrypts
    if not ring.encrypts:
        logger.warning(NO_KEYS_WARNING)
    return ring


def key_ring() -> KeyRing:
    """The key ring in use (an empty one until ``configure_keys`` is called)."""
    return _state.ring


def generate_key() -> str:
    """A new random Fernet data key (url-safe base64 text)."""
    return Fernet.generate_key().decode("ascii")


def load_or_create_demo_keys(path: Path) -> list[str]:
    """The demo's data keys from ``path`` (a JSON list), created with one new key on first run.

    For demo mode only: a real installation keeps its keys in configuration or a secret store.
    """
    if path.exists():
        keys = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(keys, list) or not keys or not all(isinstance(k, str) for k in keys):
            raise ValueError(f"{path} must hold a JSON list of Fernet keys")
        KeyRing.from_keys(keys)  # validate
        return list(keys)
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = [generate_key()]
    # Readable by the owner only; created exclusively so two starting demos never race.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(keys, handle)
        handle.write("\n")
    logger.info("created the demo's data key file %s", path)
    return keys


# ---- values --------------------------------------------------------------------------------------


def encrypt_value(value: str, ring: KeyRing | None = None) -> str:
    """The stored form of ``value``: ``v2:…`` under the ring's first key, else ``v0:value``.

    A fresh 96-bit random nonce per value: AES-GCM stays safe for 2**32 values per key, far
    more than a hub writes before its keys are rotated (docs/privacy.md).

    The empty string is stored as ``v0:`` with or without keys: there is nothing to hide (a
    token's length would tell it anyway), and an outbox row without text costs no encryption."""
    if value == "":
        return PREFIX_CLEAR
    ring = ring or _state.ring
    if ring.primary_id is None:
        if not _state.configured and not _state.warned:
            _state.warned = True
            logger.warning(NO_KEYS_WARNING)
        return PREFIX_CLEAR + value
    nonce = os.urandom(_NONCE_BYTES)
    sealed = ring.aead[ring.primary_id].encrypt(nonce, value.encode("utf-8"), None)
    return PREFIX_ENCRYPTED + base64.urlsafe_b64encode(ring.primary_id + nonce + sealed).decode(
        "ascii"
    )


def _open(stored: str, field_name: str, ring: KeyRing) -> tuple[bytes, str]:
    """(key id, clear text) of a ``v2:`` value; ``DecryptionError`` when no key opens it."""
    if not ring.aead:
        raise DecryptionError(field_name, "it is encrypted but no data keys are configured")
    try:
        raw = base64.urlsafe_b64decode(stored[len(PREFIX_ENCRYPTED) :])
    except ValueError as exc:
        raise DecryptionError(field_name, _UNOPENED) from exc
    key_id = raw[:_KEY_ID_BYTES]
    cipher = ring.aead.get(key_id)
    if cipher is None or len(raw) < _KEY_ID_BYTES + _NONCE_BYTES + _TAG_BYTES:
        raise DecryptionError(field_name, _UNOPENED)
    nonce_end = _KEY_ID_BYTES + _NONCE_BYTES
    try:
        clear = cipher.decrypt(raw[_KEY_ID_BYTES:nonce_end], raw[nonce_end:], None)
        return key_id, clear.decode("utf-8")
    except (InvalidTag, UnicodeError) as exc:
        raise DecryptionError(field_name, _UNOPENED) from exc


def decrypt_value(stored: str, field_name: str = "value", ring: KeyRing | None = None) -> str:
    """The clear text of a stored value (``v2:``, ``v1:``, ``v0:`` or a legacy value with no
    prefix)."""
    if stored.startswith(PREFIX_ENCRYPTED):
        return _open(stored, field_name, ring or _state.ring)[1]
    if stored.startswith(PREFIX_FERNET):
        ring = ring or _state.ring
        if ring.fernet is None:
            raise DecryptionError(field_name, "it is encrypted but no data keys are configured")
        try:
            return ring.fernet.decrypt(stored[len(PREFIX_FERNET) :].encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError) as exc:
            raise DecryptionError(field_name, _UNOPENED) from exc
    if stored.startswith(PREFIX_CLEAR):
        return stored[len(PREFIX_CLEAR) :]
    return stored


def is_current(stored: str, ring: KeyRing) -> bool:
    """Whether ``stored`` is already in the form the ring writes (``v2:`` under its first key;
    the empty string is always ``v0:``). A ``v1:`` (Fernet) value never is."""
    if ring.primary_id is None or stored == PREFIX_CLEAR:
        return stored.startswith(PREFIX_CLEAR)
    if not stored.startswith(PREFIX_ENCRYPTED):
        return False
    try:
        key_id, _clear = _open(stored, "value", ring)
    except DecryptionError:
        return False
    return key_id == ring.primary_id


class EncryptedString(TypeDecorator[str]):
    """A personal text field, stored as ``v2:<AES-GCM token>`` (Text) and read back as clear text.

    ``field_name`` ("table.column") names the column in decryption errors. SQL comparisons and
    ordering on the column are refused: compare in Python, or use a blind index.
    """

    impl = Text
    cache_ok = True
    # the same text encrypts differently each time (hub.storage.bulk reuses no result)
    randomised = True

    class Comparator(TypeDecorator.Comparator[str]):
        _ALLOWED: Final = frozenset({operators.is_, operators.is_not})

        def operate(self, op: Any, *other: Any, **kwargs: Any) -> Any:
            if op in self._ALLOWED:
                return super().operate(op, *other, **kwargs)
            raise EncryptedColumnError(
                f"{getattr(op, '__name__', op)} on an encrypted column ({self.expr}) compares "
                "ciphertexts: compare in Python or use a blind index"
            )

        def reverse_operate(self, op: Any, other: Any, **kwargs: Any) -> Any:
            if op in self._ALLOWED:
                return super().reverse_operate(op, other, **kwargs)
            raise EncryptedColumnError(f"{op} on an encrypted column ({self.expr})")

    comparator_factory = Comparator

    def __init__(self, field_name: str) -> None:
        super().__init__()
        self.field_name = field_name

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return encrypt_value(value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return decrypt_value(value, self.field_name)

    def copy(self, **kw: Any) -> EncryptedString:
        return EncryptedString(self.field_name)


class JSONWithPrivateText(TypeDecorator[dict[str, Any]]):
    """A JSON object some of whose top-level string values are personal (a nurse's note, an SMS
    reply and its number, a person's name): those are stored encrypted (``v2:…``) inside the
    JSON, the rest stays plain, so the structure remains readable.

    For the append-only alarm timeline: its rows can never be rewritten, so ``carehub keys
    rotate`` cannot re-encrypt them; a retired key stays in ``security.data_keys`` (decrypt-only,
    after the newest) for as long as timeline entries written under it are kept. A value no
    configured key opens is shown as ``UNREADABLE`` (logged), never a crash: an alarm's page must
    always open.
    """

    impl = JSON
    randomised = True
    cache_ok = True

    def __init__(self, field_name: str, private_keys: tuple[str, ...]) -> None:
        super().__init__()
        self.field_name = field_name
        self.private_keys = private_keys

    def process_bind_param(
        self, value: dict[str, Any] | None, dialect: Dialect
    ) -> dict[str, Any] | None:
        if value is None:
            return None
        return {
            k: encrypt_value(v) if k in self.private_keys and isinstance(v, str) else v
            for k, v in value.items()
        }

    def process_result_value(
        self, value: dict[str, Any] | None, dialect: Dialect
    ) -> dict[str, Any] | None:
        if value is None:
            return None
        out: dict[str, Any] = {}
        for k, v in value.items():
            if k in self.private_keys and isinstance(v, str):
                try:
                    v = decrypt_value(v, f"{self.field_name}.{k}")
                except DecryptionError as exc:
                    logger.error("%s", exc)
                    v = UNREADABLE
            out[k] = v
        return out

    def copy(self, **kw: Any) -> JSONWithPrivateText:
        return JSONWithPrivateText(self.field_name, self.private_keys)


UNREADABLE: Final = "[UNREADABLE: no configured data key opens this value]"


# ---- phone blind index -----------------------------------------------------------------------


def normalise_phone(number: str) -> str:
    """E.164-ish canonical form: punctuation dropped, ``00`` → ``+``, 8 digits → ``+47`` prefix."""
    compact = _PHONE_PUNCTUATION.sub("", number)
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    if re.fullmatch(r"\d{8}", compact):
        compact = "+47" + compact
    return compact


def _hmac(key: bytes, number: str) -> str:
    return hmac.new(key, normalise_phone(number).encode("utf-8"), hashlib.sha256).hexdigest()


def phone_index(number: str | None, ring: KeyRing | None = None) -> str | None:
    """The blind index stored next to an encrypted phone: HMAC-SHA256 of the normalised number
    with the key derived from the first data key (the public unkeyed key when there is none)."""
    if number is None or not normalise_phone(number):
        return None
    ring = ring or _state.ring
    return _hmac(ring.index_keys[0] if ring.index_keys else UNKEYED_INDEX_KEY, number)


def phone_index_candidates(number: str, ring: KeyRing | None = None) -> tuple[str, ...]:
    """Every index a stored ``number`` may have: one per configured data key (rows not yet
    re-indexed after a rotation) and the unkeyed one (rows written before any key existed)."""
    ring = ring or _state.ring
    keys = (*ring.index_keys, UNKEYED_INDEX_KEY)
    return tuple(dict.fromkeys(_hmac(key, number) for key in keys))


def maintain_phone_index(
    cls: type[Any], phone_attr: str = "phone", index_attr: str = "phone_index"
) -> None:
    """Keep ``cls.<index_attr>`` equal to the blind index of ``cls.<phone_attr>`` on every flush
    (ORM inserts and updates; Core/bulk statements bypass it: ``carehub keys rotate`` repairs)."""

    def _set_index(_mapper: Mapper[Any], _connection: Any, target: Any) -> None:
        wanted = phone_index(getattr(target, phone_attr))
        if getattr(target, index_attr) != wanted:
            setattr(target, index_attr, wanted)

    event.listen(cls, "before_insert", _set_index)
    event.listen(cls, "before_update", _set_index)


# ---- rotation --------------------------------------------------------------------------------


@dataclass
class TableRotation:
    """What ``rotate`` did to one table."""

    rows: int = 0
    reencrypted: int = 0  # rows whose values were rewritten with the first key
    reindexed: int = 0  # phone indexes rebuilt
    changed_meanwhile: int = 0  # rows someone else updated between read and write (skipped)


@dataclass
class RotationReport:
    tables: dict[str, TableRotation] = field(default_factory=dict)

    @property
    def reencrypted(self) -> int:
        return sum(t.reencrypted for t in self.tables.values())

    @property
    def reindexed(self) -> int:
        return sum(t.reindexed for t in self.tables.values())


def encrypted_columns(metadata: MetaData) -> dict[Table, list[Column[Any]]]:
    """The tables of ``metadata`` with ``EncryptedString`` columns, and those columns."""
    found: dict[Table, list[Column[Any]]] = {}
    for table in metadata.sorted_tables:
        columns = [c for c in table.columns if isinstance(c.type, EncryptedString)]
        if columns:
            found[table] = columns
    return found


def count_rows(factory: sessionmaker[Session], tables: Iterable[Table]) -> dict[str, int]:
    with factory() as session:
        return {
            t.name: int(session.scalar(select(func.count()).select_from(t)) or 0) for t in tables
        }


def rotate(
    factory: sessionmaker[Session],
    metadata: MetaData,
    *,
    batch_size: int = 500,
    ring: KeyRing | None = None,
    on_batch: Callable[[str, int], None] | None = None,
) -> RotationReport:
    """Rewrite every encrypted value not yet under the ring's first key, and rebuild every phone
    index that differs, in batches of ``batch_size`` rows, one transaction per batch.

    Idempotent; safe while the hub runs (a row changed between read and write is left as the
    running hub wrote it, which is already under the current key). ``on_batch(table, rows)``
    reports progress.
    """
    ring = ring or _state.ring
    if not ring.encrypts:
        raise ValueError("no data keys are configured: there is no key to rotate to")
    report = RotationReport()
    for table, columns in encrypted_columns(metadata).items():
        counts = report.tables.setdefault(table.name, TableRotation())
        last: Any = None
        while True:
            with factory() as session, session.begin():
                done, last = _rotate_batch(session, table, columns, ring, last, batch_size, counts)
            if on_batch is not None and done:
                on_batch(table.name, done)
            if done < batch_size:
                break
    return report


def _rotate_batch(
    session: Session,
    table: Table,
    columns: list[Column[Any]],
    ring: KeyRing,
    after: Any,
    batch_size: int,
    counts: TableRotation,
) -> tuple[int, Any]:
    (pk,) = table.primary_key.columns
    index_column = table.c.get("phone_index")
    phone_column = table.c.get("phone")
    raw_columns = [type_coerce(c, Text).label(c.name) for c in columns]
    query = select(pk, *raw_columns).order_by(pk).limit(batch_size)
    if index_column is not None:
        query = query.add_columns(index_column.label("phone_index"))
    if after is not None:
        query = query.where(pk > after)
    rows = session.execute(query).mappings().all()
    for row in rows:
        counts.rows += 1
        values: dict[str, Any] = {}
        clear: dict[str, str | None] = {}
        for column in columns:
            stored = row[column.name]
            field_name = f"{table.name}.{column.name}"
            clear[column.name] = None if stored is None else decrypt_value(stored, field_name, ring)
            value = clear[column.name]
            if stored is not None and value is not None and not is_current(stored, ring):
                # Bound as Text: encrypted here with ``ring``, not again by the column type.
                values[column.name] = type_coerce(encrypt_value(value, ring), Text)
        reencrypted = bool(values)
        if index_column is not None and phone_column is not None:
            wanted = phone_index(clear.get(phone_column.name), ring)
            if row["phone_index"] != wanted:
                values[index_column.name] = wanted
        if not values:
            continue
        guard = [
            type_coerce(c, Text).is_(None)
            if row[c.name] is None
            else type_coerce(c, Text) == row[c.name]
            for c in columns
        ]
        result = session.execute(update(table).where(pk == row[pk.name], *guard).values(values))
        if getattr(result, "rowcount", 1) == 0:
            counts.changed_meanwhile += 1
            continue
        counts.reencrypted += int(reencrypted)
        counts.reindexed += int(index_column is not None and index_column.name in values)
    return len(rows), (rows[-1][pk.name] if rows else after)


__all__ = [
    "DecryptionError",
    "EncryptedColumnError",
    "EncryptedString",
    "KeyRing",
    "RotationReport",
    "TableRotation",
    "configure_keys",
    "count_rows",
    "decrypt_value",
    "encrypt_value",
    "encrypted_columns",
    "generate_key",
    "is_current",
    "key_ring",
    "load_or_create_demo_keys",
    "maintain_phone_index",
    "normalise_phone",
    "phone_index",
    "phone_index_candidates",
    "rotate",
]
