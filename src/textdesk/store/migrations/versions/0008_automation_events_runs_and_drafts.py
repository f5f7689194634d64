"""automations: customer events, automations and their versions, durable runs, drafts

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04

``customer_events`` (posted through ``POST /api/v1/events``; the idempotency key is unique per
organization), ``automations`` with one ``automation_versions`` row per edit (a run finishes on
the version it started with), ``automation_runs`` (a waiting run is a durable timer: its next
step is due at ``due_at``), their ``automation_run_history``, and ``message_drafts`` (messages an
automation queued for a person to send with one action).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from textdesk.store.tables import UTCDateTime

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "automations",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("org_id", _ID, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="active", nullable=False),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.Column("created_by", _ID, nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "status IN ('active', 'paused', 'archived')", name=op.f("ck_automations_status")
        ),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["users.id"],
            name=op.f("fk_automations_created_by_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_automations_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_automations")),
    )
    op.create_table(
        "customer_events",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("org_id", _ID, nullable=False),
        sa.Column("contact_id", _ID, nullable=False),
        sa.Column("type", sa.String(length=100), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=True),
        sa.Column("occurs_at", UTCDateTime(), nullable=False),
        sa.Column("data", _JSON, server_default="{}", nullable=False),
        sa.Column("idempotency_key", sa.String(length=220), nullable=True),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name=op.f("fk_customer_events_contact_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_customer_events_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_events")),
        sa.UniqueConstraint(
            "org_id", "idempotency_key", name=op.f("uq_customer_events_org_id_idempotency_key")
        ),
    )
    op.create_index("ix_customer_events_contact_id_id", "customer_events", ["contact_id", "id"])
    op.create_index("ix_customer_events_org_id_id", "customer_events", ["org_id", "id"])

    op.create_table(
        "automation_versions",
        sa.Column("automation_id", _ID, nullable=False),
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("org_id", _ID, nullable=False),
        sa.Column("trigger", _JSON, nullable=False),
        sa.Column("conditions", _JSON, server_default="{}", nullable=False),
        sa.Column("steps", _JSON, nullable=False),
        sa.Column("created_by", _ID, nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["automation_id"],
            ["automations.id"],
            name=op.f("fk_automation_versions_automation_id_automations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["users.id"],
            name=op.f("fk_automation_versions_created_by_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_automation_versions_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("automation_id", "version", name=op.f("pk_automation_versions")),
    )
    op.create_table(
        "automation_runs",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("org_id", _ID, nullable=False),
        sa.Column("automation_id", _ID, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("event_id", _ID, nullable=True),
        sa.Column("contact_id", _ID, nullable=False),
        sa.Column("subject", sa.String(length=320), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("cursor", sa.Integer(), server_default="0", nullable=False),
        sa.Column("due_at", UTCDateTime(), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.CheckConstraint(
            "state IN ('waiting', 'done', 'cancelled', 'skipped', 'failed')",
            name=op.f("ck_automation_runs_state"),
        ),
        sa.ForeignKeyConstraint(
            ["automation_id", "version"],
            ["automation_versions.automation_id", "automation_versions.version"],
            name=op.f("fk_automation_runs_automation_id_automation_versions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name=op.f("fk_automation_runs_contact_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["customer_events.id"],
            name=op.f("fk_automation_runs_event_id_customer_events"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_automation_runs_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_automation_runs")),
        sa.UniqueConstraint(
            "automation_id", "event_id", name=op.f("uq_automation_runs_automation_id_event_id")
        ),
    )
    op.create_index(
        "ix_automation_runs_automation_id_id", "automation_runs", ["automation_id", "id"]
    )
    op.create_index(
        "ix_automation_runs_contact_id_state", "automation_runs", ["contact_id", "state"]
    )
    op.create_index("ix_automation_runs_org_id_subject", "automation_runs", ["org_id", "subject"])
    op.create_index("ix_automation_runs_state_due_at", "automation_runs", ["state", "due_at"])

    op.create_table(
        "automation_run_history",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("org_id", _ID, nullable=False),
        sa.Column("run_id", _ID, nullable=False),
        sa.Column("step", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.Text(), server_default="", nullable=False),
        sa.Column("message_id", _ID, nullable=True),
        sa.Column("draft_id", _ID, nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            name=op.f("fk_automation_run_history_message_id_messages"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_automation_run_history_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["automation_runs.id"],
            name=op.f("fk_automation_run_history_run_id_automation_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_automation_run_history")),
    )
    op.create_index("ix_automation_run_history_run_id", "automation_run_history", ["run_id"])

    op.create_table(
        "message_drafts",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("org_id", _ID, nullable=False),
        sa.Column("conversation_id", _ID, nullable=False),
        sa.Column("contact_id", _ID, nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("run_id", _ID, nullable=True),
        sa.Column("step", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("message_id", _ID, nullable=True),
        sa.Column("acted_by", _ID, nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("acted_at", UTCDateTime(), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'sent', 'discarded')", name=op.f("ck_message_drafts_status")
        ),
        sa.ForeignKeyConstraint(
            ["acted_by"],
            ["users.id"],
            name=op.f("fk_message_drafts_acted_by_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name=op.f("fk_message_drafts_contact_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_message_drafts_conversation_id_conversations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            name=op.f("fk_message_drafts_message_id_messages"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organizations.id"],
            name=op.f("fk_message_drafts_org_id_organizations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["automation_runs.id"],
            name=op.f("fk_message_drafts_run_id_automation_runs"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_message_drafts")),
        sa.UniqueConstraint("run_id", "step", name=op.f("uq_message_drafts_run_id_step")),
    )
    op.create_index(
        "ix_message_drafts_conversation_id_status", "message_drafts", ["conversation_id", "status"]
    )


def downgrade() -> None:
    # Dropping a table drops its indexes.
    for table in (
        "message_drafts",
        "automation_run_history",
        "automation_runs",
        "automation_versions",
        "customer_events",
        "automations",
    ):
        op.drop_table(table)
