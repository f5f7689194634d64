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
    sa.Column("email", sa.String(320), nullable=False, unique=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("is_active", sa.Boolean(), nullable=False, server_default=sa.true()),
    _created(),
    sa.Column("last_login_at", UTCDateTime()),
    sa.CheckConstraint("role IN ('owner', 'admin', 'agent')", name="role"),
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

login_attempts = sa.Table(
    "login_attempts",
    metadata,
    _id(),
    sa.Column("email", sa.String(320), nullable=False),
    sa.Column("ip", sa.String(64), nullable=False),
    sa.Column("succeeded", sa.Boolean(), nullable=False),
    _created(),
    sa.Index("ix_login_attempts_email_created", "email", "created_at"),
    sa.Index("ix_login_attempts_ip_created", "ip", "created_at"),
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
    _created(),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint("org_id", "phone_e164"),
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
    sa.Column("last_message_at", UTCDateTime()),
    _created(),
    sa.UniqueConstraint("org_id", "contact_id"),
    sa.Index("ix_conversations_org_status_last", "org_id", "status", "last_message_at"),
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
    _org(),
    sa.Column("phone_e164", sa.String(20), nullable=False),
    sa.Column("contact_id", BigId, sa.ForeignKey("contacts.id", ondelete="SET NULL")),
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
    sa.Column("created_by", BigId, sa.ForeignKey("users.id", ondelete="SET NULL")),
    _created(),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
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


def utcnow() -> datetime:
    return datetime.now(UTC)
