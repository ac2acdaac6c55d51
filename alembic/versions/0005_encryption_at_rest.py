"""Personal fields encrypted at rest (Text columns) and phone blind indexes.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 09:00:00.000000

Existing values are left as they are: a value without a "v1:"/"v0:" prefix is read as clear text,
and `carehub keys rotate` encrypts it under the configured data key. Existing phones get the
unkeyed blind index (the one hub.storage.crypto writes when no data key is configured), which
lookups always accept until `carehub keys rotate` re-indexes them under the data key.
"""

import hashlib
import hmac
import re
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0005'
down_revision: str | Sequence[str] | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, column, old length, nullable)
ENCRYPTED = (
    ("homes", "address", 200, True),
    ("residents", "label", 100, False),
    ("residents", "full_name", 200, False),
    ("relatives", "name", 200, False),
    ("relatives", "phone", 32, False),
    ("staff_users", "phone", 32, True),
)
INDEXED = ("relatives", "staff_users")
# Copies of hub.storage.crypto.UNKEYED_INDEX_KEY and normalise_phone() as of this revision
# (migrations never import hub code, which may change after them).
UNKEYED_INDEX_KEY = b"carehub/phone-index/unkeyed"
_PUNCTUATION = re.compile(r"[\s\-().]")


def _normalise_phone(number: str) -> str:
    compact = _PUNCTUATION.sub("", number)
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    if re.fullmatch(r"\d{8}", compact):
        compact = "+47" + compact
    return compact


def _unkeyed_index(number: str | None) -> str | None:
    if number is None:
        return None
    normalised = _normalise_phone(number)
    if not normalised:
        return None
    return hmac.new(UNKEYED_INDEX_KEY, normalised.encode("utf-8"), hashlib.sha256).hexdigest()


def _index_existing_phones(table_name: str) -> None:
    connection = op.get_bind()
    table = sa.table(
        table_name, sa.column("id", sa.Integer), sa.column("phone", sa.Text),
        sa.column("phone_index", sa.String(64)),
    )
    rows = connection.execute(sa.select(table.c.id, table.c.phone)).all()
    for row_id, phone in rows:
        # A value someone already wrote with a prefix is not indexed here (keys rotate does it).
        if phone is None or phone.startswith(("v0:", "v1:", "v2:")):
            continue
        connection.execute(
            sa.update(table).where(table.c.id == row_id).values(phone_index=_unkeyed_index(phone))
        )


def _refuse_encrypted_values() -> None:
    connection = op.get_bind()
    for table_name, column_name, _length, _nullable in ENCRYPTED:
        column = sa.column(column_name, sa.Text)
        count = connection.execute(
            sa.select(sa.func.count()).select_from(sa.table(table_name, column))
            .where(sa.or_(column.like("v1:%"), column.like("v2:%")))
        ).scalar_one()
        if count:
            raise RuntimeError(
                f"{table_name}.{column_name} holds {count} encrypted value(s): a schema before "
                "0005 cannot store them. Restore a backup from before 0005 instead."
            )


def _strip_clear_prefix() -> None:
    connection = op.get_bind()
    for table_name, column_name, _length, _nullable in ENCRYPTED:
        column = sa.column(column_name, sa.Text)
        table = sa.table(table_name, column)
        stripped = sa.func.substr(column, 4)
        statement = sa.update(table).where(column.like("v0:%")).values({column_name: stripped})
        connection.execute(statement)


def _tables() -> list[str]:
    return list(dict.fromkeys(table_name for table_name, *_rest in ENCRYPTED))


def upgrade() -> None:
    # One batch per table: SQLite rebuilds each table once.
    for table_name in _tables():
        with op.batch_alter_table(table_name, schema=None) as batch_op:
            for table, column_name, length, nullable in ENCRYPTED:
                if table == table_name:
                    batch_op.alter_column(
                        column_name,
                        existing_type=sa.String(length=length),
                        type_=sa.Text(),
                        existing_nullable=nullable,
                    )
            if table_name in INDEXED:
                batch_op.add_column(sa.Column('phone_index', sa.String(length=64), nullable=True))
                batch_op.create_index(
                    batch_op.f(f'ix_{table_name}_phone_index'), ['phone_index'], unique=False
                )
    for table_name in INDEXED:
        _index_existing_phones(table_name)


def downgrade() -> None:
    _refuse_encrypted_values()
    _strip_clear_prefix()
    for table_name in reversed(_tables()):
        with op.batch_alter_table(table_name, schema=None) as batch_op:
            if table_name in INDEXED:
                batch_op.drop_index(batch_op.f(f'ix_{table_name}_phone_index'))
                batch_op.drop_column('phone_index')
            for table, column_name, length, nullable in ENCRYPTED:
                if table == table_name:
                    batch_op.alter_column(
                        column_name,
                        existing_type=sa.Text(),
                        type_=sa.String(length=length),
                        existing_nullable=nullable,
                    )
