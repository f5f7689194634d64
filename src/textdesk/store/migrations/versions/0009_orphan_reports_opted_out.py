"""a parked delivery report keeps whether it said the recipient opted out

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02

A report that beats its send result waits in ``orphan_reports`` until the provider id is stored.
Twilio fails an accepted message with 21610 when the recipient had replied STOP to Twilio; that
opt-out must reach the consent ledger however the report arrived, so the parked report keeps
the adapter's ``opted_out`` flag (``StatusReport.opted_out``).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("orphan_reports", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("opted_out", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("orphan_reports", schema=None) as batch_op:
        batch_op.drop_column("opted_out")
