"""Device security: MQTT credentials, broker accounts, append-only device history, walk tests.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 11:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0006'
down_revision: str | Sequence[str] | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


HISTORY_MESSAGE = "device_history is append-only"
HISTORY_TRIGGERS = {"device_history_no_update": "UPDATE", "device_history_no_delete": "DELETE"}
HISTORY_PG_FUNCTION = f"""
CREATE FUNCTION device_history_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '{HISTORY_MESSAGE}' USING ERRCODE = 'restrict_violation';
END;
$$
"""


def _history_triggers(create: bool) -> None:
    pg = op.get_context().dialect.name == "postgresql"
    if create and pg:
        op.execute(HISTORY_PG_FUNCTION)
    for name, operation in HISTORY_TRIGGERS.items():
        if not create:
            op.execute(f"DROP TRIGGER IF EXISTS {name}" + (" ON device_history" if pg else ""))
        elif pg:
            op.execute(
                f"CREATE TRIGGER {name} BEFORE {operation} ON device_history "
                "FOR EACH ROW EXECUTE FUNCTION device_history_append_only()"
            )
        else:
            op.execute(
                f"CREATE TRIGGER {name} BEFORE {operation} ON device_history "
                f"BEGIN SELECT RAISE(ABORT, '{HISTORY_MESSAGE}'); END"
            )
    if not create and pg:
        op.execute("DROP FUNCTION IF EXISTS device_history_append_only()")


def upgrade() -> None:
    op.create_table('device_credentials',
    sa.Column('device_id', sa.String(length=64), nullable=False),
    sa.Column('mqtt_username', sa.String(length=128), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=False),
    sa.Column('hmac_key', sa.String(length=128), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['device_id'], ['devices.id'], name=op.f('fk_device_credentials_device_id_devices')),
    sa.PrimaryKeyConstraint('device_id', name=op.f('pk_device_credentials')),
    sa.UniqueConstraint('mqtt_username', name=op.f('uq_device_credentials_mqtt_username'))
    )
    op.create_table('broker_accounts',
    sa.Column('username', sa.String(length=128), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('username', name=op.f('pk_broker_accounts'))
    )
    op.create_table('device_history',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('device_id', sa.String(length=64), nullable=False),
    sa.Column('home_id', sa.String(length=64), nullable=True),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=128), nullable=False),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('detail', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_device_history'))
    )
    with op.batch_alter_table('device_history', schema=None) as batch_op:
        batch_op.create_index('ix_device_history_device_at', ['device_id', 'at'], unique=False)

    op.create_table('walk_tests',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('home_id', sa.String(length=64), nullable=False),
    sa.Column('started_by', sa.String(length=128), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('test_mode_until', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_by', sa.String(length=128), nullable=True),
    sa.Column('results', sa.JSON(), nullable=True),
    sa.ForeignKeyConstraint(['home_id'], ['homes.id'], name=op.f('fk_walk_tests_home_id_homes')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_walk_tests'))
    )
    with op.batch_alter_table('walk_tests', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_walk_tests_home_id'), ['home_id'], unique=False)

    _history_triggers(create=True)


def downgrade() -> None:
    _history_triggers(create=False)
    with op.batch_alter_table('walk_tests', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_walk_tests_home_id'))

    op.drop_table('walk_tests')
    with op.batch_alter_table('device_history', schema=None) as batch_op:
        batch_op.drop_index('ix_device_history_device_at')

    op.drop_table('device_history')
    op.drop_table('broker_accounts')
    op.drop_table('device_credentials')
