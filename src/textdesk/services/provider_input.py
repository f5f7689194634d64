"""What providers tell us (inbound messages, delivery reports), checked before it is stored.

Every inbound path (Twilio, Telnyx and simulator webhooks, SMPP deliver_sm) reaches the store
through ``messaging.receive_inbound``, which calls :func:`inbound`; the webhook routes call
:func:`report` before a delivery report joins a batch, where one that can't be stored would fail
every report written with it.

* The sender must be a phone number (``domain.phone.sender_e164``). An alphanumeric sender id
  or a short code can send us a message but can't be answered from a P2P number, and a contact
  whose "phone" is ``<script>`` is only a liability; so such messages are refused
  (``Invalid``, field ``from``) and never create a contact.
* Ids and codes must fit their columns and hold no control characters: they are keys, so they
  are refused, not trimmed.
* Free text is kept, made storable: NUL (which PostgreSQL text refuses) and lone UTF-16
  surrogates (which can't be encoded for either engine) become U+FFFD. A customer's message
  is never dropped for a character.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime

from textdesk.domain.phone import PhoneError, sender_e164
from textdesk.providers.base import InboundSms, StatusReport
from textdesk.services.errors import Invalid

#: ``messages.provider_message_id`` and ``orphan_reports.provider_message_id``.
MAX_ID = 200
#: ``messages.error_code``.
MAX_CODE = 64

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")


def storable(text: str) -> str:
    return _UNSTORABLE.sub("\ufffd", text)


def _key(value: str, field: str, limit: int) -> str:
    if not value:
        raise Invalid(f"{field} is empty", field=field)
    if len(value) > limit:
        raise Invalid(f"{field} is longer than {limit} characters", field=field)
    if _CONTROL.search(value):
        raise Invalid(f"{field} has control characters: {value[:40]!r}", field=field)
    return value


def inbound(sms: InboundSms, *, region: str, now: datetime) -> InboundSms:
    """``sms`` ready to store: the sender in E.164 (``region`` reads a national SMPP address),
    a time no later than ``now``. Raises ``Invalid`` naming the field."""
    try:
        sender = sender_e164(sms.sender, region)
    except PhoneError as exc:
        raise Invalid(
            f"from: {exc}; an inbound message must come from a phone number we can answer",
            field="from",
        ) from None
    received_at = sms.received_at
    if received_at is not None:
        if received_at.tzinfo is None:
            received_at = received_at.replace(tzinfo=UTC)
        # A provider's clock (or a forged field) must not date a message in the future,
        # where it would stay at the end of every thread.
        received_at = min(received_at, now)
    return dataclasses.replace(
        sms,
        provider_message_id=_key(sms.provider_message_id, "id", MAX_ID),
        sender=sender,
        body=storable(sms.body),
        received_at=received_at,
    )


def report(report: StatusReport) -> StatusReport:
    """``report`` ready to store, or ``Invalid`` naming the field."""
    code = report.error_code
    message = report.error_message
    return dataclasses.replace(
        report,
        provider_message_id=_key(report.provider_message_id, "id", MAX_ID),
        error_code=None if code is None else _key(code, "error_code", MAX_CODE),
        error_message=None if message is None else storable(message),
    )
