"""What an inbound reply means for consent: STOP and its free-text forms, HELP, START.

Runs inside the transaction that stores the inbound message (an inbound hook), so the opt-out
is recorded before anything else can be sent to that number.

- **Opt-out** (keyword, or free text the classifier is certain of; "likely" free text too under
  the org's ``auto`` policy): a ledger event, the contact suppressed at once, and **one**
  confirmation, unless the provider already sent one for that exact keyword (Twilio Advanced
  Opt-Out, Telnyx's default STOP handling): never two. A contact already opted out gets no
  second confirmation.
- **Likely opt-out under the ``review`` policy**: the conversation is flagged for an agent.
- **HELP**: the org's help text, subscribed or not.
- **START / UNSTOP / YES** from an opted-out contact: a re-opt-in event and a confirmation.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from textdesk.domain import keywords
from textdesk.domain.keywords import Intent, Tier
from textdesk.services import consent
from textdesk.services.compliance import Purpose
from textdesk.services.consent import ConsentKind, ConsentSource
from textdesk.services.messaging import Message, queue_outbound
from textdesk.settings import Settings
from textdesk.store.tables import contacts, conversations, messages, organizations, utcnow

DEFAULTS = {
    "opt_out_confirmation": (
        "{org}: you are unsubscribed and will get no more messages. Reply START to resubscribe."
    ),
    "help_text": (
        "{org}: reply here and a person will answer. Msg & data rates may apply. "
        "Reply STOP to opt out."
    ),
    "opt_in_confirmation": (
        "{org}: you are resubscribed. Reply HELP for help, STOP to opt out. "
        "Msg & data rates may apply."
    ),
    "free_text_policy": "auto",
}


def org_setting(org_settings: dict[str, Any], name: str) -> str:
    value = org_settings.get(name)
    return str(value) if value else DEFAULTS[name]


def _provider_already_confirmed(channel: Any, sms_body: str, intent: Intent) -> bool:
    """Whether the channel's provider answered this exact keyword itself."""
    config = channel.config or {}
    if channel.provider == "twilio" and not config.get("advanced_opt_out"):
        return False
    if channel.provider not in keywords.PROVIDER_KEYWORDS:
        return False
    return keywords.provider_confirms(channel.provider, sms_body, intent=intent)


def on_inbound(conn: Connection, settings: Settings, message: Message, channel: Any) -> None:
    result = keywords.classify(message.body)
    if result.intent is Intent.NONE:
        return
    now = utcnow()
    org = conn.execute(
        sa.select(organizations.c.name, organizations.c.settings).where(
            organizations.c.id == message.org_id
        )
    ).one()
    org_settings = dict(org.settings or {})
    contact = conn.execute(sa.select(contacts).where(contacts.c.id == message.contact_id)).one()
    evidence = {
        "message_id": message.id,
        "body": message.body,
        "rule": result.rule,
        "confidence": result.confidence,
        "explanation": result.explanation,
    }
    source = ConsentSource.KEYWORD if result.tier is Tier.KEYWORD else ConsentSource.FREE_TEXT

    def record(kind: ConsentKind) -> None:
        consent.record(
            conn,
            org_id=message.org_id,
            phone=contact.phone_e164,
            kind=kind,
            source=source,
            actor="system:compliance",
            now=now,
            evidence=evidence,
            message_id=message.id,
        )

    def reply(template_name: str, key: str) -> None:
        text = org_setting(org_settings, template_name).replace("{org}", org.name)
        queue_outbound(
            conn,
            settings,
            org_id=message.org_id,
            contact_id=message.contact_id,
            body=text,
            actor="system:compliance",
            purpose=Purpose.COMPLIANCE,
            channel_id=channel.id,
            # One answer per inbound message, however often the provider retries the callback.
            idempotency_key=f"{key}:{message.id}",
        )

    if result.intent is Intent.OPT_OUT:
        policy = org_setting(org_settings, "free_text_policy")
        if result.needs_review and policy == "review":
            _flag(conn, message, f"possible opt-out: {result.explanation}", now)
            return
        was_opted_out = bool(contact.opted_out)
        record(ConsentKind.OPT_OUT)
        if not was_opted_out and not _provider_already_confirmed(
            channel, message.body, Intent.OPT_OUT
        ):
            reply("opt_out_confirmation", "opt-out-confirmation")
    elif result.intent is Intent.HELP:
        record(ConsentKind.HELP)
        if not _provider_already_confirmed(
            channel, message.body, Intent.HELP
        ) and not _answered_recently(conn, message.contact_id, "help:", now):
            reply("help_text", "help")
    elif result.intent is Intent.OPT_IN and contact.opted_out:
        record(ConsentKind.RE_OPT_IN)
        if not _provider_already_confirmed(channel, message.body, Intent.OPT_IN):
            reply("opt_in_confirmation", "opt-in-confirmation")


#: One HELP answer per contact per window: another auto-responder that answers our answer
#: with HELP would otherwise ping-pong with us forever.
HELP_ANSWER_WINDOW = timedelta(minutes=10)


def _answered_recently(conn: Connection, contact_id: int, key_prefix: str, now: datetime) -> bool:
    return (
        conn.execute(
            sa.select(messages.c.id)
            .where(
                messages.c.contact_id == contact_id,
                messages.c.direction == "out",
                messages.c.idempotency_key.like(f"{key_prefix}%"),
                messages.c.created_at >= now - HELP_ANSWER_WINDOW,
            )
            .limit(1)
        ).first()
        is not None
    )


def _flag(conn: Connection, message: Message, reason: str, now: datetime) -> None:
    conn.execute(
        sa.update(conversations)
        .where(conversations.c.id == message.conversation_id)
        .values(needs_review=True, review_reason=reason, last_message_at=now)
    )
