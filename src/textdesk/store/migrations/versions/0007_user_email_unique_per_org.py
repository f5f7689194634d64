"""users: an e-mail is unique per organization, not per server

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28

With one ``users.email`` for the whole server, an admin adding a person whose address another
organization already has got 409: the answer told one tenant who the other's users are.
Accounts belong to their organization (``uq_users_org_id_email``); the same address in two
organizations is two accounts, and login asks which one when the password opens both
(``services/auth.authenticate``). ``ix_users_email`` serves the login's look-up by e-mail.

SQLite rebuilds ``users`` (batch mode), with foreign keys off for the rebuild (``env.py``), so
that dropping the old table cascades into nothing that points at a user.

Downgrade: the server-wide constraint cannot hold an address that two organizations have; it
refuses with a message naming them, rather than deleting accounts.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_users_email"), type_="unique")
        batch_op.create_unique_constraint(batch_op.f("uq_users_org_id_email"), ["org_id", "email"])
        batch_op.create_index(batch_op.f("ix_users_email"), ["email"], unique=False)


def downgrade() -> None:
    shared = (
        op.get_bind()
        .execute(sa.text("SELECT email FROM users GROUP BY email HAVING COUNT(*) > 1"))
        .scalars()
        .all()
    )
    if shared:
        raise RuntimeError(
            "cannot downgrade below 0007: these e-mails belong to users of several "
            f"organizations: {', '.join(sorted(shared))}"
        )
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_users_email"))
        batch_op.drop_constraint(batch_op.f("uq_users_org_id_email"), type_="unique")
        batch_op.create_unique_constraint(batch_op.f("uq_users_email"), ["email"])
