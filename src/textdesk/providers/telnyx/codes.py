"""Telnyx's message statuses and error codes, translated to ours.

Sources:

* General API errors (1xxxx): https://developers.telnyx.com/development/api-fundamentals/api-errors
* Messaging errors (4xxxx): https://developers.telnyx.com/docs/messaging/messages/error-codes
  and the per-code pages https://developers.telnyx.com/api/errors/<code>.

Codes marked *(checked)* were read on a Telnyx page while writing this table. Codes marked
*(unverified)* come from secondary transcriptions of Telnyx's messaging error table and could not
be confirmed on Telnyx's own pages; their classification errs towards a plain permanent failure.

Telnyx answers errors as ``{"errors": [{"code": "40300", "title": ..., "detail": ...}]}``; the
code is a string. Our error codes are namespaced ``telnyx:<code>``.
"""

from __future__ import annotations

from enum import Enum

from textdesk.domain.states import MessageStatus


class Kind(Enum):
    """Which ``ProviderError`` a send-time Telnyx error becomes."""

    INVALID_NUMBER = "invalid_number"
    OPTED_OUT = "opted_out"
    AUTH = "auth"
    THROTTLED = "throttled"
    TEMPORARY = "temporary"
    PERMANENT = "permanent"


#: ``payload.to[0].status`` in ``message.sent`` / ``message.finalized`` events.
#: ``None``: not yet news for the state machine.
STATUSES: dict[str, MessageStatus | None] = {
    "queued": None,
    "sending": None,
    "sent": MessageStatus.SENT,  # handed to the carrier
    "delivered": MessageStatus.DELIVERED,  # the carrier confirmed delivery
    # Telnyx could not hand it to the carrier at all: it never left, like Twilio's "failed".
    "sending_failed": MessageStatus.FAILED,
    # The carrier reported it could not deliver: it left, like Twilio's "undelivered".
    "delivery_failed": MessageStatus.UNDELIVERED,
    # Final, but the carrier never sent a receipt: all we know is that it was sent.
    "delivery_unconfirmed": MessageStatus.SENT,
}

#: Send-time errors whose class is not a plain permanent failure. Codes absent here become
#: ``PermanentFailure("telnyx:<code>")`` (unless the HTTP status says 429 or 5xx).
SEND_ERRORS: dict[str, Kind] = {
    "10002": Kind.INVALID_NUMBER,  # Invalid phone number (checked)
    "10007": Kind.TEMPORARY,  # Unexpected error, "may be a temporary issue on our end" (checked)
    "10008": Kind.TEMPORARY,  # Request timeout (checked)
    "10009": Kind.AUTH,  # Authentication failed: bad or missing API key (checked)
    "10010": Kind.AUTH,  # Authorization failed: the key may not do this (checked)
    "10011": Kind.THROTTLED,  # Too many requests (checked)
    # "Phone number must be in +E.164 format" (checked). We always send E.164, so the number
    # itself is what Telnyx could not read.
    "10016": Kind.INVALID_NUMBER,
    "40001": Kind.INVALID_NUMBER,  # Not routable: landline or non-routable number (checked)
    "40011": Kind.THROTTLED,  # Rate limit exceeded upstream (carrier throughput) (checked)
    "40012": Kind.INVALID_NUMBER,  # Invalid destination number: carrier rejected it (checked)
    # Blocked due to STOP message: the recipient texted STOP/END/QUIT... to this number, and
    # Telnyx blocks the pair at the messaging profile level (checked; documented with HTTP 409).
    "40300": Kind.OPTED_OUT,
    "40310": Kind.INVALID_NUMBER,  # Invalid 'to' address (unverified)
    # Messaging profile disabled / messaging disabled on account (unverified). Every message on
    # the channel would fail the same way, so pause the channel rather than fail them one by one.
    "40312": Kind.AUTH,
    "40314": Kind.AUTH,
}

#: Short human descriptions, for error messages and delivery reports.
DESCRIPTIONS: dict[str, str] = {
    "10001": "inactive phone number",
    "10002": "invalid phone number",
    "10004": "missing required parameter",
    "10005": "resource not found",
    "10007": "unexpected Telnyx error",
    "10008": "request timed out",
    "10009": "authentication failed (check the API key)",
    "10010": "authorization failed",
    "10011": "too many requests",
    "10015": "bad request",
    "10016": "phone number must be in +E.164 format",
    "40001": "not routable (landline or non-routable number)",
    "40002": "blocked as spam by the carrier (temporary)",
    "40003": "sending number blocked as spam by the carrier (permanent)",
    "40004": "rejected by the destination carrier",
    "40005": "message expired before delivery",
    "40006": "recipient's carrier unavailable",
    "40008": "undeliverable (the carrier did not accept it)",
    "40009": "invalid message body",
    "40010": "unregistered 10DLC message",  # (unverified)
    "40011": "carrier rate limit exceeded",
    "40012": "invalid destination number",
    "40013": "invalid source number",
    "40014": "expired in queue",
    "40015": "blocked by Telnyx's spam filter",
    "40300": "the recipient replied STOP (blocked by Telnyx)",
    "40301": "unsupported message type for the destination",  # (unverified)
    "40302": "message too large",  # (unverified)
    "40305": "invalid 'from' address (not on this messaging profile?)",  # (unverified)
    "40309": "destination region not enabled on the messaging profile",  # (unverified)
    "40310": "invalid 'to' address",  # (unverified)
    "40312": "messaging profile is disabled",  # (unverified)
    "40314": "messaging is disabled on the account",  # (unverified)
}


def describe(code: str | None) -> str | None:
    """A short human description of a Telnyx error code, or None if we don't know it."""
    if code is None:
        return None
    return DESCRIPTIONS.get(code)


def namespaced(code: str) -> str:
    return f"telnyx:{code}"
