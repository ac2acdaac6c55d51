"""One index for the escalation engine's due query.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25 03:00:00.000000

The engine asks "which active escalations are due now, oldest due first" and "when is the next
active one due". With one index on `state` and another on `next_due_at`, SQLite read every
active escalation through the `state` index and sorted them for each batch of the tick; one index
on (`state`, `next_due_at`) gives both queries the due rows in order, and each step's UPDATE
keeps one index instead of two (ADR 19).
"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = '0008'
down_revision: str | Sequence[str] | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('alarm_escalations', schema=None) as batch_op:
        batch_op.create_index('ix_alarm_escalations_due', ['state', 'next_due_at'], unique=False)
        batch_op.drop_index(batch_op.f('ix_alarm_escalations_state'))
        batch_op.drop_index(batch_op.f('ix_alarm_escalations_next_due_at'))


def downgrade() -> None:
    with op.batch_alter_table('alarm_escalations', schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f('ix_alarm_escalations_next_due_at'), ['next_due_at'], unique=False
        )
        batch_op.create_index(batch_op.f('ix_alarm_escalations_state'), ['state'], unique=False)
        batch_op.drop_index('ix_alarm_escalations_due')
