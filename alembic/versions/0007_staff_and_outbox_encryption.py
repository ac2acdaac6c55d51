"""Staff names, TOTP secrets and the SMS outbox encrypted at rest; single-use TOTP codes.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26 09:00:00.000000

Like 0005, this revision changes column types only. Existing values are left as they are: a
value without a "v1:"/"v0:" prefix is read as clear text, and `carehub keys rotate` (run after
upgrading) encrypts it under the configured data key. Migrations never see the data keys (they
live in the hub's configuration and may differ per process), so they do not encrypt here.

`notifications.to_number` loses its plain index: an index on ciphertexts finds nothing, and no
code looks a notification up by number (SMS replies find the person by the staff and relatives'
phone blind index). `staff_users.totp_last_step` remembers the last accepted TOTP time step.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0007'
down_revision: str | Sequence[str] | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, column, old type, nullable)
ENCRYPTED: tuple[tuple[str, str, sa.types.TypeEngine[str], bool], ...] = (
    ("staff_users", "display_name", sa.String(length=200), False),
    ("staff_users", "totp_secret", sa.String(length=64), True),
    ("notifications", "to_number", sa.String(length=32), True),
    ("notifications", "body", sa.Text(), False),
)


def _refuse_encrypted_values() -> None:
    connection = op.get_bind()
    for table_name, column_name, _old_type, _nullable in ENCRYPTED:
        column = sa.column(column_name, sa.Text)
        count = connection.execute(
            sa.select(sa.func.count()).select_from(sa.table(table_name, column))
            .where(sa.or_(column.like("v1:%"), column.like("v2:%")))
        ).scalar_one()
        if count:
            raise RuntimeError(
                f"{table_name}.{column_name} holds {count} encrypted value(s): a schema before "
                "0007 cannot read them. Restore a backup from before 0007 instead."
            )


def _strip_clear_prefix() -> None:
    connection = op.get_bind()
    for table_name, column_name, _old_type, _nullable in ENCRYPTED:
        column = sa.column(column_name, sa.Text)
        table = sa.table(table_name, column)
        stripped = sa.func.substr(column, 4)
        connection.execute(
            sa.update(table).where(column.like("v0:%")).values({column_name: stripped})
        )


def upgrade() -> None:
    with op.batch_alter_table('staff_users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('totp_last_step', sa.BigInteger(), nullable=True))
        batch_op.alter_column(
            'display_name',
            existing_type=sa.String(length=200),
            type_=sa.Text(),
            existing_nullable=False,
        )
        batch_op.alter_column(
            'totp_secret',
            existing_type=sa.String(length=64),
            type_=sa.Text(),
            existing_nullable=True,
        )
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_notifications_to_number'))
        batch_op.alter_column(
            'to_number',
            existing_type=sa.String(length=32),
            type_=sa.Text(),
            existing_nullable=True,
        )


def downgrade() -> None:
    _refuse_encrypted_values()
    _strip_clear_prefix()
    with op.batch_alter_table('notifications', schema=None) as batch_op:
        batch_op.alter_column(
            'to_number',
            existing_type=sa.Text(),
            type_=sa.String(length=32),
            existing_nullable=True,
        )
        batch_op.create_index(
            batch_op.f('ix_notifications_to_number'), ['to_number'], unique=False
        )
    with op.batch_alter_table('staff_users', schema=None) as batch_op:
        batch_op.alter_column(
            'totp_secret',
            existing_type=sa.Text(),
            type_=sa.String(length=64),
            existing_nullable=True,
        )
        batch_op.alter_column(
            'display_name',
            existing_type=sa.Text(),
            type_=sa.String(length=200),
            existing_nullable=False,
        )
        batch_op.drop_column('totp_last_step')
