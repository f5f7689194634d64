"""Table definitions (SQLAlchemy Core). Migrations in ``store/migrations`` must match these;
``tests/store/test_migrations.py`` fails on any drift.

Every business row carries ``org_id``: textdesk is multi-tenant from the first table, and every
repository function takes the organization it is scoped to.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Aware UTC datetimes on both engines.

    SQLite has no time zone type and hands back naive values; PostgreSQL's ``timestamptz``
    hands back aware ones. Normalizing here means no code above the store ever sees a naive
    datetime, which is what makes quiet-hours arithmetic safe.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use datetime.now(UTC)")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utc_storable(value: datetime) -> bool:
    """Whether :class:`UTCDateTime` can store ``value``: aware, and still inside Python's
    calendar once moved to UTC (0001-01-01T00:00+01:00 is not; astimezone overflows)."""
    if value.tzinfo is None:
        return False
    try:
        value.astimezone(UTC)
    except OverflowError:
        return False
    return True


#: Integer primary keys; BIGINT on PostgreSQL, INTEGER on SQLite (where only INTEGER PRIMARY KEY
#: is an alias of the rowid and autoincrements).
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _id() -> sa.Column[Any]:
    return sa.Column("id", BigId, primary_key=True, autoincrement=True)


def _org() -> sa.Column[Any]:
    return sa.Column(
        "org_id", BigId, sa.ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False
    )


def _created() -> sa.Column[Any]:
    return sa.Column("created_at", UTCDateTime(), nullable=False)


organizations = sa.Table(
    "organizations",
    metadata,
    _id(),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("slug", sa.String(80), nullable=False, unique=True),
    sa.Column("default_region", sa.String(2), nullable=False, server_default="US"),
    sa.Column("time_zone", sa.String(64), nullable=False, server_default="America/New_York"),
    sa.Column("settings", Json, nullable=False, server_default="{}"),
    _created(),
)

users = sa.Table(
    "users",
    metadata,
    _id(),
    _org(),
    # Unique per organization, not per server: an organization's users are its own, and
    # adding someone must not tell whether another organization has them (services/accounts).
    # Login looks the e-mail up across organizations, hence the index.
    sa.Column("email", sa.String(320), nullable=False, index=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("is_active", sa.Boolean(), nullable=False, server_default=sa.true()),
    _created(),
    sa.Column("last_login_at", UTCDateTime()),
    sa.CheckConstraint("role IN ('owner', 'admin', 'agent')", name="role"),
    sa.UniqueConstraint("org_id", "email"),
)

user_sessions = sa.Table(
    "user_sessions",
    metadata,
    _id(),
    _org(),
    sa.Column(
        "user_id", BigId, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    ),
    # sha256 of the cookie token: a leaked database does not leak live sessions.
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("csrf_token", sa.String(64), nullable=False),
    sa.Column("ip", sa.String(64)),
    sa.Column("user_agent", sa.String(400)),
    _created(),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    sa.Column("revoked_at", UTCDateTime()),
)

# One counter per client address and per login e-mail: the attempts of the current window.
# A login reserves its attempt here (INSERT ... ON CONFLICT DO UPDATE ... RETURNING) before its
# password is checked, so concurrent guesses cannot all read "under the limit" (services/lockout).
login_throttle = sa.Table(
    "login_throttle",
    metadata,
    sa.Column("scope", sa.String(8), primary_key=True),
    sa.Column("key", sa.String(320), primary_key=True),
    sa.Column("window_started_at", UTCDateTime(), nullable=False, index=True),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.CheckConstraint("scope IN ('address', 'account')", name="scope"),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    _id(),
    _org(),
    sa.Column("name", sa.String(200), nullable=False),
    # The first characters of the key, shown in lists so people can tell keys apart.
    sa.Column("prefix", sa.String(16), nullable=False),
    # sha256 of a 256-bit random key: a slow hash buys nothing against that entropy, and
    # every API request checks it.
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("role", sa.String(16), nullable=False, server_default="admin"),
    sa.Column("created_by", BigId, sa.ForeignKey("users.id", ondelete="SET NULL")),
    _created(),
    sa.Column("last_used_at", UTCDateTime()),
    sa.Column("revoked_at", UTCDateTime()),
)

channels = sa.Table(
    "channels",
    metadata,
    _id(),
    _org(),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("provider", sa.String(32), nullable=False),
    sa.Column("phone_e164", sa.String(20), nullable=False),
    # 10dlc, toll_free, short_code, smpp, other: sets the default send rate.
    sa.Column("number_type", sa.String(16), nullable=False, server_default="10dlc"),
    sa.Column("rate_per_second", sa.Float()),
    # Provider credentials and options; never logged, never returned by the API.
    sa.Column("config", Json, nullable=False, server_default="{}"),
    sa.Column("is_active", sa.Boolean(), nullable=False, server_default=sa.true()),
    # Circuit breaker: a provider that keeps failing pauses its channel (visible to admins).
    sa.Column("consecutive_failures", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("paused_until", UTCDateTime()),
    sa.Column("pause_reason", sa.Text()),
    _created(),
    sa.UniqueConstraint("org_id", "phone_e164"),
)

# GCRA state per sender number: the theoretical arrival time of the next segment. Kept in the
# database so the rate holds across every worker process.
channel_throttle = sa.Table(
    "channel_throttle",
    metadata,
    sa.Column(
        "channel_id", BigId, sa.ForeignKey("channels.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("tat", UTCDateTime(), nullable=False),
)

# Segments handed to providers per organization per UTC day (carrier daily brand caps).
org_daily_usage = sa.Table(
    "org_daily_usage",
    metadata,
    sa.Column(
        "org_id", BigId, sa.ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("day", sa.Date(), primary_key=True),
    sa.Column("segments", sa.Integer(), nullable=False, server_default="0"),
)

# Delivery reports whose provider id matches no message yet (an SMPP receipt can beat the
# submit response; a crash can lose the id). Applied when the id is stored, else kept as evidence.
orphan_reports = sa.Table(
    "orphan_reports",
    metadata,
    _id(),
    sa.Column(
        "channel_id", BigId, sa.ForeignKey("channels.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("provider_message_id", sa.String(200), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("error_code", sa.String(64)),
    sa.Column("error_detail", sa.Text()),
    sa.Column("opted_out", sa.Boolean(), nullable=False, server_default=sa.false()),
    _created(),
    sa.Index("ix_orphan_reports_channel_provider_id", "channel_id", "provider_message_id"),
)

contacts = sa.Table(
    "contacts",
    metadata,
    _id(),
    _org(),
    sa.Column("phone_e164", sa.String(20), nullable=False),
    sa.Column("first_name", sa.String(200), nullable=False, server_default=""),
    sa.Column("last_name", sa.String(200), nullable=False, server_default=""),
    sa.Column("email", sa.String(320)),
    sa.Column("zip", sa.String(16)),
    sa.Column("state", sa.String(8)),
    sa.Column("time_zone", sa.String(64)),
    sa.Column("external_id", sa.String(200)),
    sa.Column("fields", Json, nullable=False, server_default="{}"),
    sa.Column("tags", Json, nullable=False, server_default="[]"),
    # Derived from consent_events (the ledger is the truth); kept here for fast filtering.
    sa.Column("opted_out", sa.Boolean(), nullable=False, server_default=sa.false()),
    # Kept by messaging for segments ("last_inbound < -30d") without scanning messages.
    sa.Column("last_inbound_at", UTCDateTime()),
    sa.Column("last_outbound_at", UTCDateTime()),
    _created(),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint("org_id", "phone_e164"),
    sa.Index("ix_contacts_org_state", "org_id", "state"),
    sa.Index("ix_contacts_org_zip", "org_id", "zip"),
    sa.Index("ix_contacts_org_external_id", "org_id", "external_id"),
)

# Typed custom fields, defined per organization; values live in contacts.fields under ``key``
# (text: string, number: JSON number, date: "YYYY-MM-DD", boolean: JSON bool).
custom_fields = sa.Table(
    "custom_fields",
    metadata,
    _id(),
    _org(),
    sa.Column("key", sa.String(40), nullable=False),
    sa.Column("label", sa.String(200), nullable=False),
    sa.Column("type", sa.String(8), nullable=False),
    _created(),
    sa.UniqueConstraint("org_id", "key"),
    sa.CheckConstraint("type IN ('text', 'number', 'date', 'boolean')", name="type"),
)

# Saved segments: a name for a query in the segment language (``domain.segments``).
segments = sa.Table(
    "segments",
    metadata,
    _id(),
    _org(),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("query", sa.Text(), nullable=False),
    sa.Column("created_by", BigId, sa.ForeignKey("users.id", ondelete="SET NULL")),
    _created(),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint("org_id", "name"),
)

# CSV imports: the uploaded file is kept on disk until the import ends; ``processed_rows`` is the
# resume point (rows of the file whose effects are committed), advanced in the same transaction as
# each batch, so a crashed import resumes without redoing or losing a row.
imports = sa.Table(
    "imports",
    metadata,
    _id(),
    _org(),
    sa.Column("created_by", BigId, sa.ForeignKey("users.id", ondelete="SET NULL")),
    sa.Column("filename", sa.String(255), nullable=False),
    sa.Column("path", sa.Text(), nullable=False),
    sa.Column("size_bytes", sa.BigInteger(), nullable=False, server_default="0"),
    # uploaded (waiting for a mapping), queued, running, done, failed, cancelled
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("encoding", sa.String(16)),
    sa.Column("delimiter", sa.String(2)),
    # {"column header or index": "contact attribute"}
    sa.Column("mapping", Json, nullable=False, server_default="{}"),
    # fill (only empty fields), overwrite, skip (existing contacts untouched)
    sa.Column("policy", sa.String(16), nullable=False, server_default="fill"),
    sa.Column("tags", Json, nullable=False, server_default="[]"),
    sa.Column("options", Json, nullable=False, server_default="{}"),
    sa.Column("total_rows", sa.Integer()),
    sa.Column("processed_rows", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("inserted", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("updated", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("skipped", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("rejected", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("error", sa.Text()),
    sa.Column("lease_until", UTCDateTime()),
    sa.Column("leased_by", sa.String(64)),
    _created(),
    sa.Column("started_at", UTCDateTime()),
    sa.Column("finished_at", UTCDateTime()),
    sa.Index("ix_imports_status", "status"),
)

# One row per rejected line: the key makes a re-run of a batch idempotent.
import_rejects = sa.Table(
    "import_rejects",
    metadata,
    sa.Column(
        "import_id", BigId, sa.ForeignKey("imports.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("line", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("reason", sa.Text(), nullable=False),
    sa.Column("raw", sa.Text(), nullable=False, server_default=""),
)

conversations = sa.Table(
    "conversations",
    metadata,
    _id(),
    _org(),
    # One thread per contact per organization; its channel is the contact's sticky sender.
    sa.Column(
        "contact_id", BigId, sa.ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("channel_id", BigId, sa.ForeignKey("channels.id", ondelete="SET NULL")),
    sa.Column("assignee_id", BigId, sa.ForeignKey("users.id", ondelete="SET NULL")),
    sa.Column("status", sa.String(16), nullable=False, server_default="open"),
    sa.Column("unread_count", sa.Integer(), nullable=False, server_default="0"),
    # A reply that may be an opt-out (free text, "likely") under the org's review policy.
    sa.Column("needs_review", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("review_reason", sa.Text()),
    # The campaign whose first message opened the thread (inbox filter; replies go to its agent).
    sa.Column("campaign_id", BigId, sa.ForeignKey("campaigns.id", ondelete="SET NULL")),
    sa.Column("last_message_at", UTCDateTime()),
    sa.Column("last_inbound_at", UTCDateTime()),
    _created(),
    sa.UniqueConstraint("org_id", "contact_id"),
    sa.Index("ix_conversations_org_status_last", "org_id", "status", "last_message_at"),
    sa.Index("ix_conversations_org_assignee", "org_id", "assignee_id", "status"),
)

# Internal notes on a conversation: seen by the team, never sent.
conversation_notes = sa.Table(
    "conversation_notes",
    metadata,
    _id(),
    _org(),
    sa.Column(
        "conversation_id",
        BigId,
        sa.ForeignKey("conversations.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("author_id", BigId, sa.ForeignKey("users.id", ondelete="SET NULL")),
    sa.Column("body", sa.Text(), nullable=False),
    _created(),
)

messages = sa.Table(
    "messages",
    metadata,
    _id(),
    _org(),
    sa.Column("conversation_id", BigId, sa.ForeignKey("conversations.id", ondelete="CASCADE")),
    sa.Column(
        "contact_id", BigId, sa.ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("channel_id", BigId, sa.ForeignKey("channels.id", ondelete="SET NULL")),
    sa.Column("direction", sa.String(3), nullable=False),
    sa.Column("body", sa.Text(), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    # marketing, informational, conversational: consent is purpose-scoped.
    sa.Column("purpose", sa.String(16), nullable=False, server_default="conversational"),
    sa.Column("encoding", sa.String(8)),
    sa.Column("segments", sa.Integer(), nullable=False, server_default="1"),
    # Lifecycle: when it may go, until when it is worth sending, and the worker's lease.
    sa.Column("send_after", UTCDateTime()),
    sa.Column("valid_until", UTCDateTime()),
    sa.Column("lease_until", UTCDateTime()),
    sa.Column("leased_by", sa.String(64)),
    sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("priority", sa.SmallInteger(), nullable=False, server_default="0"),
    # Our idempotency key: one message per key per organization, ever.
    sa.Column("idempotency_key", sa.String(200)),
    sa.Column("provider_message_id", sa.String(200)),
    sa.Column("error_code", sa.String(64)),
    sa.Column("error_detail", sa.Text()),
    # The compliance gate's last decision: machine code plus a human sentence.
    sa.Column("gate_code", sa.String(64)),
    sa.Column("gate_detail", sa.Text()),
    # Content warnings that did not block (shown to whoever sent it): [{code, message}].
    sa.Column("warnings", Json, nullable=False, server_default="[]"),
    sa.Column("created_by", BigId, sa.ForeignKey("users.id", ondelete="SET NULL")),
    _created(),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("sent_at", UTCDateTime()),
    sa.Column("delivered_at", UTCDateTime()),
    sa.UniqueConstraint("org_id", "idempotency_key"),
    # The outbox claim: queued messages of one channel, most urgent first.
    sa.Index("ix_messages_outbox", "status", "channel_id", "priority", "id"),
    sa.Index("ix_messages_status_due", "status", "send_after"),
    sa.Index("ix_messages_status_lease", "status", "lease_until"),
    sa.Index("ix_messages_provider_id", "channel_id", "provider_message_id"),
    # Providers retry inbound callbacks; the database refuses to store one twice.
    sa.Index(
        "uq_messages_inbound_provider_id",
        "channel_id",
        "provider_message_id",
        unique=True,
        sqlite_where=sa.text("direction = 'in'"),
        postgresql_where=sa.text("direction = 'in'"),
    ),
    sa.Index("ix_messages_conversation_created", "conversation_id", "created_at"),
    sa.Index("ix_messages_contact_created", "contact_id", "created_at"),
)

message_events = sa.Table(
    "message_events",
    metadata,
    _id(),
    _org(),
    sa.Column(
        "message_id",
        BigId,
        sa.ForeignKey("messages.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("from_status", sa.String(16)),
    sa.Column("to_status", sa.String(16), nullable=False),
    # "user:12", "provider:twilio", "system:gate", "worker:host-123"
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("reason", sa.String(64)),
    sa.Column("provider_code", sa.String(64)),
    sa.Column("detail", sa.Text()),
    _created(),
)

consent_events = sa.Table(
    "consent_events",
    metadata,
    _id(),
    # The organization, with no foreign key either (migration 0005): the ledger is an
    # append-only compliance record, like an audit log never blocked or cascaded by another
    # table, and a foreign key cost an import a lookup in ``organizations`` per event. There is
    # no organization delete path; an organization purge, when there is one, must delete the
    # organization's ledger explicitly.
    sa.Column("org_id", BigId, nullable=False),
    sa.Column("phone_e164", sa.String(20), nullable=False),
    # The contact the event was recorded for, for information only: no foreign key. The ledger
    # is an immutable compliance record that outlives contacts; consent belongs to the number
    # (org_id, phone_e164), which is how it is read. Deleting a contact leaves its events as
    # they were (with the id of the deleted contact), and an import appends its events without
    # a per-event check and row lock on the contact (migration 0004).
    sa.Column("contact_id", BigId),
    # opt_in, opt_out, re_opt_in, help
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("purpose", sa.String(16), nullable=False, server_default="all"),
    # keyword, free_text, web_form, import, api, agent, provider
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("evidence", Json, nullable=False, server_default="{}"),
    sa.Column("message_id", BigId, sa.ForeignKey("messages.id", ondelete="SET NULL")),
    sa.Column("actor", sa.String(64), nullable=False),
    _created(),
    sa.Index("ix_consent_events_org_phone", "org_id", "phone_e164", "created_at"),
)

campaigns = sa.Table(
    "campaigns",
    metadata,
    _id(),
    _org(),
    sa.Column("name", sa.String(200), nullable=False),
    # draft, active, paused, archived
    sa.Column("status", sa.String(16), nullable=False, server_default="draft"),
    sa.Column("script", sa.Text(), nullable=False, server_default=""),
    sa.Column("segment_query", sa.Text(), nullable=False, server_default=""),
    sa.Column("purpose", sa.String(16), nullable=False, server_default="marketing"),
    # Sender numbers (channel ids) the campaign may use; empty means any active channel.
    sa.Column("channel_ids", Json, nullable=False, server_default="[]"),
    # Schedule window: sends are offered only between these instants (either may be open).
    sa.Column("starts_at", UTCDateTime()),
    sa.Column("ends_at", UTCDateTime()),
    # Dynamic assignment: contacts handed to an agent per request, and how long they stay theirs.
    sa.Column("batch_size", sa.Integer(), nullable=False, server_default="50"),
    sa.Column("assignment_timeout_seconds", sa.Integer(), nullable=False, server_default="900"),
    sa.Column("created_by", BigId, sa.ForeignKey("users.id", ondelete="SET NULL")),
    _created(),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("started_at", UTCDateTime()),
    sa.Column("archived_at", UTCDateTime()),
)

campaign_agents = sa.Table(
    "campaign_agents",
    metadata,
    sa.Column(
        "campaign_id", BigId, sa.ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("user_id", BigId, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    _created(),
)

# The campaign's audience, materialized at start: one row per contact, its assignment and its
# first message. (campaign_id, contact_id) is unique; the message's idempotency key is derived
# from it, so one contact gets one first message per campaign however often "send" is pressed.
campaign_contacts = sa.Table(
    "campaign_contacts",
    metadata,
    _id(),
    _org(),
    sa.Column(
        "campaign_id", BigId, sa.ForeignKey("campaigns.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column(
        "contact_id", BigId, sa.ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False
    ),
    # pending (in the pool), assigned, sent, skipped (excluded at send: opted out, quiet hours
    # past the window, active elsewhere...), excluded (at start)
    sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
    sa.Column("assignee_id", BigId, sa.ForeignKey("users.id", ondelete="SET NULL")),
    sa.Column("assigned_until", UTCDateTime()),
    sa.Column("message_id", BigId, sa.ForeignKey("messages.id", ondelete="SET NULL")),
    sa.Column("sent_by", BigId, sa.ForeignKey("users.id", ondelete="SET NULL")),
    sa.Column("sent_at", UTCDateTime()),
    sa.Column("reason", sa.String(64)),
    _created(),
    sa.UniqueConstraint("campaign_id", "contact_id"),
    sa.Index("ix_campaign_contacts_pool", "campaign_id", "status", "id"),
    sa.Index("ix_campaign_contacts_assignee", "campaign_id", "assignee_id", "status"),
    sa.Index("ix_campaign_contacts_contact", "contact_id", "status"),
)

# Canned responses: org-wide (campaign_id NULL) or for one campaign.
canned_responses = sa.Table(
    "canned_responses",
    metadata,
    _id(),
    _org(),
    sa.Column("campaign_id", BigId, sa.ForeignKey("campaigns.id", ondelete="CASCADE")),
    sa.Column("title", sa.String(200), nullable=False),
    sa.Column("body", sa.Text(), nullable=False),
    sa.Column("created_by", BigId, sa.ForeignKey("users.id", ondelete="SET NULL")),
    _created(),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)

# Survey questions of a campaign; options are [{"label", "tag"?, "field"?, "value"?}]: an answer
# tags the contact and/or sets a custom field.
survey_questions = sa.Table(
    "survey_questions",
    metadata,
    _id(),
    _org(),
    sa.Column(
        "campaign_id", BigId, sa.ForeignKey("campaigns.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("position", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("prompt", sa.Text(), nullable=False),
    sa.Column("options", Json, nullable=False, server_default="[]"),
    _created(),
)

survey_answers = sa.Table(
    "survey_answers",
    metadata,
    _id(),
    _org(),
    sa.Column(
        "question_id",
        BigId,
        sa.ForeignKey("survey_questions.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column(
        "contact_id", BigId, sa.ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("campaign_id", BigId, sa.ForeignKey("campaigns.id", ondelete="CASCADE")),
    sa.Column("answer", sa.String(200), nullable=False),
    sa.Column("answered_by", BigId, sa.ForeignKey("users.id", ondelete="SET NULL")),
    _created(),
    sa.UniqueConstraint("question_id", "contact_id"),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    _id(),
    # Nullable: a failed login for an unknown e-mail belongs to no organization.
    sa.Column("org_id", BigId, sa.ForeignKey("organizations.id", ondelete="CASCADE")),
    sa.Column("actor", sa.String(64), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("target", sa.String(128)),
    sa.Column("ip", sa.String(64)),
    sa.Column("user_agent", sa.String(400)),
    sa.Column("detail", Json, nullable=False, server_default="{}"),
    _created(),
    sa.Index("ix_audit_log_org_created", "org_id", "created_at"),
)


# --- automations (services/automations) ---------------------------------------------------------

# What happened to a customer in another system (an appointment booked, an order shipped), posted
# through the API. ``idempotency_key`` (the event's own id, or derived from the request's
# Idempotency-Key) is unique per organization: a retried event is stored once and runs once.
customer_events = sa.Table(
    "customer_events",
    metadata,
    _id(),
    _org(),
    sa.Column(
        "contact_id", BigId, sa.ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False
    ),
    # namespace.name: appointment.booked, order.shipped, or the organization's own
    sa.Column("type", sa.String(100), nullable=False),
    # What the event is about in the sender's system (an appointment id): a rescheduled or
    # cancelled event with the same namespace and key replaces or cancels the pending runs.
    sa.Column("key", sa.String(200)),
    sa.Column("occurs_at", UTCDateTime(), nullable=False),
    sa.Column("data", Json, nullable=False, server_default="{}"),
    sa.Column("idempotency_key", sa.String(220)),
    sa.Column("actor", sa.String(64), nullable=False),
    _created(),
    sa.UniqueConstraint("org_id", "idempotency_key"),
    sa.Index("ix_customer_events_contact_id_id", "contact_id", "id"),
    sa.Index("ix_customer_events_org_id_id", "org_id", "id"),
)

# An automation; its definition lives in automation_versions, one row per edit, so a run
# started on version 3 finishes on version 3 whatever happens to the automation meanwhile.
automations = sa.Table(
    "automations",
    metadata,
    _id(),
    _org(),
    sa.Column("name", sa.String(200), nullable=False),
    # active (starts runs), paused (starts none), archived (deleted; kept for run history)
    sa.Column("status", sa.String(16), nullable=False, server_default="active"),
    sa.Column("version", sa.Integer(), nullable=False, server_default="1"),
    sa.Column("created_by", BigId, sa.ForeignKey("users.id", ondelete="SET NULL")),
    _created(),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.CheckConstraint("status IN ('active', 'paused', 'archived')", name="status"),
)

automation_versions = sa.Table(
    "automation_versions",
    metadata,
    sa.Column(
        "automation_id",
        BigId,
        sa.ForeignKey("automations.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("version", sa.Integer(), primary_key=True, autoincrement=False),
    _org(),
    # Validated JSON (services/automations/spec.py): {"type": "event", "event_types": [...]},
    # {"segment": ..., "event": [...]}, [{"type": "wait", ...}, {"type": "send", ...}, ...]
    sa.Column("trigger", Json, nullable=False),
    sa.Column("conditions", Json, nullable=False, server_default="{}"),
    sa.Column("steps", Json, nullable=False),
    sa.Column("created_by", BigId, sa.ForeignKey("users.id", ondelete="SET NULL")),
    _created(),
)

# One automation working on one event for one contact. A waiting run is a timer: its next step
# (``cursor``) is due at ``due_at``; workers claim due runs and write each step's effect in the
# transaction that advances the cursor.
automation_runs = sa.Table(
    "automation_runs",
    metadata,
    _id(),
    _org(),
    sa.Column("automation_id", BigId, nullable=False),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("event_id", BigId, sa.ForeignKey("customer_events.id", ondelete="CASCADE")),
    sa.Column(
        "contact_id", BigId, sa.ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False
    ),
    # "<event namespace>:<event key>" (appointment:A-17): what rescheduling and cancelling match
    sa.Column("subject", sa.String(320)),
    # waiting, done, cancelled, skipped (conditions not met), failed
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("cursor", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("due_at", UTCDateTime()),
    # Failed attempts at the current step (an unexpected error); the run fails after a few.
    sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("reason", sa.String(64)),
    _created(),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("finished_at", UTCDateTime()),
    sa.ForeignKeyConstraint(
        ["automation_id", "version"],
        ["automation_versions.automation_id", "automation_versions.version"],
        ondelete="CASCADE",
    ),
    sa.UniqueConstraint("automation_id", "event_id"),
    sa.CheckConstraint(
        "state IN ('waiting', 'done', 'cancelled', 'skipped', 'failed')", name="state"
    ),
    sa.Index("ix_automation_runs_state_due_at", "state", "due_at"),
    sa.Index("ix_automation_runs_org_id_subject", "org_id", "subject"),
    sa.Index("ix_automation_runs_contact_id_state", "contact_id", "state"),
    sa.Index("ix_automation_runs_automation_id_id", "automation_id", "id"),
)

# A run's step-by-step history: why a customer got, or did not get, a message.
automation_run_history = sa.Table(
    "automation_run_history",
    metadata,
    _id(),
    _org(),
    sa.Column(
        "run_id",
        BigId,
        sa.ForeignKey("automation_runs.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("step", sa.Integer()),
    # started, skipped, wait, send, queue_for_person, tag, untag, stop, done, cancelled, error
    sa.Column("kind", sa.String(32), nullable=False),
    # ok, queued, held, refused, error, ...
    sa.Column("outcome", sa.String(32), nullable=False),
    sa.Column("detail", sa.Text(), nullable=False, server_default=""),
    sa.Column("message_id", BigId, sa.ForeignKey("messages.id", ondelete="SET NULL")),
    sa.Column("draft_id", BigId),
    _created(),
)

# A message waiting for a person to send it with one action (an automation's queue_for_person
# step): the P2P way, shown in the conversation.
message_drafts = sa.Table(
    "message_drafts",
    metadata,
    _id(),
    _org(),
    sa.Column(
        "conversation_id",
        BigId,
        sa.ForeignKey("conversations.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column(
        "contact_id", BigId, sa.ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("body", sa.Text(), nullable=False),
    sa.Column("purpose", sa.String(16), nullable=False),
    sa.Column("run_id", BigId, sa.ForeignKey("automation_runs.id", ondelete="SET NULL")),
    sa.Column("step", sa.Integer()),
    # pending, sent, discarded
    sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
    sa.Column("reason", sa.Text()),
    sa.Column("message_id", BigId, sa.ForeignKey("messages.id", ondelete="SET NULL")),
    sa.Column("acted_by", BigId, sa.ForeignKey("users.id", ondelete="SET NULL")),
    _created(),
    sa.Column("acted_at", UTCDateTime()),
    sa.UniqueConstraint("run_id", "step"),
    sa.CheckConstraint("status IN ('pending', 'sent', 'discarded')", name="status"),
    sa.Index("ix_message_drafts_conversation_id_status", "conversation_id", "status"),
)


# --- engine-specific objects ----------------------------------------------------------------------
# Full-text search and JSON indexes exist on one engine only, so they are created by migrations
# with raw SQL rather than declared above; the drift check skips them by name.

#: PostgreSQL: the text the contacts' full-text index covers (``services.search`` must use the
#: same expression for the planner to pick the index).
PG_CONTACT_TSV = (
    "to_tsvector('simple', textdesk_unaccent(coalesce(first_name, '') || ' ' || "
    "coalesce(last_name, '') || ' ' || coalesce(email, '')))"
)
PG_MESSAGE_TSV = "to_tsvector('simple', textdesk_unaccent(body))"

ENGINE_SPECIFIC_PREFIXES = ("contacts_fts", "messages_fts", "ix_pg_")


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Alembic's filter: leave the engine-specific search objects out of autogenerate."""
    return not (name and name.startswith(ENGINE_SPECIFIC_PREFIXES))


def utcnow() -> datetime:
    return datetime.now(UTC)
