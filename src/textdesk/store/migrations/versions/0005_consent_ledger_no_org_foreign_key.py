"""the consent ledger has no foreign key to organizations either

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27

``consent_events`` is an append-only compliance record: like an audit log, it is never
blocked or cascaded by another table (0004 removed the foreign key to ``contacts``). The
foreign key to ``organizations`` (``ON DELETE CASCADE``) cost every appended event a lookup and
a key-share lock on the organization's row (an import of a million rows appends ~700,000
events: ~2.5 CPU-seconds of the PostgreSQL server's time). ``org_id`` stays, NOT NULL and
indexed (``ix_consent_events_org_phone``), and is how the ledger is read.

The product has no organization delete path. An organization purge, when one is built, must
delete the organization's ledger events explicitly (nothing cascades to them any more).
SQLite rebuilds the table (batch mode).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FK = "fk_consent_events_org_id_organizations"


def upgrade() -> None:
    with op.batch_alter_table("consent_events", schema=None) as batch_op:
        batch_op.drop_constraint(_FK, type_="foreignkey")


def downgrade() -> None:
    # Events of organizations deleted since could not satisfy the old constraint: they go, as
    # the old ON DELETE CASCADE would have taken them.
    op.execute(
        "DELETE FROM consent_events WHERE NOT EXISTS "
        "(SELECT 1 FROM organizations WHERE organizations.id = consent_events.org_id)"
    )
    with op.batch_alter_table("consent_events", schema=None) as batch_op:
        batch_op.create_foreign_key(_FK, "organizations", ["org_id"], ["id"], ondelete="CASCADE")
