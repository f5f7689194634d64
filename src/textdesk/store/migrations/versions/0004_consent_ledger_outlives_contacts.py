"""the consent ledger outlives contacts: no foreign key from consent_events.contact_id

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27

``consent_events`` is an immutable compliance record and consent belongs to the number
(``org_id``, ``phone_e164``), which is how the ledger is read. The foreign key to ``contacts``
(``ON DELETE SET NULL``) rewrote ledger rows when a contact was deleted, made every contact
delete scan the ledger (``contact_id`` is not indexed), and cost an import a lookup and a row
lock on the contact per event. ``contact_id`` stays as information: the contact the event was
recorded for. SQLite rebuilds the table (batch mode).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FK = "fk_consent_events_contact_id_contacts"


def upgrade() -> None:
    with op.batch_alter_table("consent_events", schema=None) as batch_op:
        batch_op.drop_constraint(_FK, type_="foreignkey")


def downgrade() -> None:
    # The old constraint cannot hold ids of contacts deleted since: those go back to NULL, as
    # the old ON DELETE SET NULL would have made them.
    op.execute(
        "UPDATE consent_events SET contact_id = NULL WHERE contact_id IS NOT NULL "
        "AND NOT EXISTS (SELECT 1 FROM contacts WHERE contacts.id = consent_events.contact_id)"
    )
    with op.batch_alter_table("consent_events", schema=None) as batch_op:
        batch_op.create_foreign_key(_FK, "contacts", ["contact_id"], ["id"], ondelete="SET NULL")
