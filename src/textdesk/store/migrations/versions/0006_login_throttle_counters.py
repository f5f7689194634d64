"""login lockout counters: login_throttle replaces login_attempts

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28

The lockout counted ``login_attempts`` rows, then checked the password, then inserted a row:
concurrent guesses all read "under the limit" and were all evaluated. ``login_throttle`` holds
one counter per client address and per login e-mail for the current window; a login reserves
its attempt with one ``INSERT ... ON CONFLICT DO UPDATE ... RETURNING`` before any password is
checked. ``login_attempts`` held nothing else (the audit log keeps every login, ok or failed),
so it goes; counting restarts from zero at the upgrade.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from textdesk.store.tables import UTCDateTime

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "login_throttle",
        sa.Column("scope", sa.String(length=8), nullable=False),
        sa.Column("key", sa.String(length=320), nullable=False),
        sa.Column("window_started_at", UTCDateTime(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.CheckConstraint("scope IN ('address', 'account')", name=op.f("ck_login_throttle_scope")),
        sa.PrimaryKeyConstraint("scope", "key", name=op.f("pk_login_throttle")),
    )
    with op.batch_alter_table("login_throttle", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_login_throttle_window_started_at"), ["window_started_at"], unique=False
        )
    with op.batch_alter_table("login_attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_login_attempts_ip_created")
        batch_op.drop_index("ix_login_attempts_email_created")
    op.drop_table("login_attempts")


def downgrade() -> None:
    op.create_table(
        "login_attempts",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=False),
        sa.Column("succeeded", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_attempts")),
    )
    with op.batch_alter_table("login_attempts", schema=None) as batch_op:
        batch_op.create_index(
            "ix_login_attempts_email_created", ["email", "created_at"], unique=False
        )
        batch_op.create_index("ix_login_attempts_ip_created", ["ip", "created_at"], unique=False)
    with op.batch_alter_table("login_throttle", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_login_throttle_window_started_at"))
    op.drop_table("login_throttle")
