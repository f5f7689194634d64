"""Twilio's message statuses and error codes, translated to ours.

Sources: the Twilio Error and Warning Dictionary (https://www.twilio.com/docs/api/errors/<code>)
and the Message resource reference. Codes marked *(checked)* were read on their dictionary page
while writing this table; the rest are from the dictionary's titles as commonly cited and were
not re-checked, so treat their wording as approximate (their classification is conservative:
anything unsure is a plain permanent failure).

Our error codes are namespaced ``twilio:<code>`` so they never collide with another provider's.
"""

from __future__ import annotations

from enum import Enum

from textdesk.domain.states import MessageStatus


class Kind(Enum):
    """Which ``ProviderError`` a send-time Twilio error becomes."""

    INVALID_NUMBER = "invalid_number"
    OPTED_OUT = "opted_out"
    AUTH = "auth"
    THROTTLED = "throttled"
    TEMPORARY = "temporary"
    PERMANENT = "permanent"


#: ``MessageStatus`` values Twilio reports in status callbacks (``MessageStatus`` form field).
#: ``None``: an intermediate or non-outbound status that carries no news for the state machine.
STATUSES: dict[str, MessageStatus | None] = {
    "accepted": None,  # a Messaging Service took it and will pick a sender
    "scheduled": None,
    "queued": None,
    "sending": None,
    "sent": MessageStatus.SENT,  # handed to the carrier
    "delivered": MessageStatus.DELIVERED,  # the carrier confirmed delivery (DLR)
    "undelivered": MessageStatus.UNDELIVERED,  # the carrier reported non-delivery
    "failed": MessageStatus.FAILED,  # Twilio could not send it (queue overflow, suspension...)
    # A scheduled message cancelled before it went out: it will never be delivered.
    "canceled": MessageStatus.FAILED,
    # "read" exists for WhatsApp/RCS only; textdesk sends SMS and ignores it.
    "read": None,
    "receiving": None,  # inbound
    "received": None,  # inbound
}

#: Send-time errors (REST API ``code`` in a 4xx answer) whose class is not a plain permanent
#: failure. Codes absent here become ``PermanentFailure("twilio:<code>")``.
SEND_ERRORS: dict[int, Kind] = {
    20003: Kind.AUTH,  # Authenticate: wrong Account SID / Auth Token
    20005: Kind.AUTH,  # Account is not active (closed or suspended)
    20429: Kind.THROTTLED,  # Too Many Requests (API concurrency limit)
    20500: Kind.TEMPORARY,  # Internal server error
    20503: Kind.TEMPORARY,  # Service unavailable
    21211: Kind.INVALID_NUMBER,  # Invalid 'To' phone number
    21214: Kind.INVALID_NUMBER,  # 'To' phone number cannot be reached (checked)
    # "Phone number does not appear to be valid" (checked). Its dictionary page speaks of calls;
    # should Messaging return it, it is about the number, so it is an invalid number either way.
    21217: Kind.INVALID_NUMBER,
    # "This Phone Number type does not support SMS" (checked). The page describes configuring a
    # number; on a send it can only concern the number type, which no retry will change.
    21407: Kind.INVALID_NUMBER,
    21610: Kind.OPTED_OUT,  # Attempt to send to unsubscribed recipient (the recipient sent STOP)
    # "This 'From' number has exceeded the maximum number of queued messages" (not re-checked):
    # Twilio's own queue for the sender is full; slowing down clears it.
    21611: Kind.THROTTLED,
    21614: Kind.INVALID_NUMBER,  # 'To' number is not a valid mobile number (checked)
    21635: Kind.INVALID_NUMBER,  # 'To' number cannot be a landline (checked)
}

#: Short human descriptions, for error messages and delivery reports.
DESCRIPTIONS: dict[int, str] = {
    20003: "authentication failed (check the Account SID and Auth Token)",
    20005: "the Twilio account is not active",
    20404: "resource not found (check the Account SID)",
    20429: "too many requests",
    20500: "Twilio internal error",
    20503: "Twilio service unavailable",
    21211: "invalid 'To' phone number",
    21214: "'To' phone number cannot be reached",
    21217: "phone number does not appear to be valid",
    21401: "invalid sender phone number or alphanumeric sender ID",  # (checked)
    # Geo permissions: the account may not send to the destination's country (not re-checked).
    21408: "sending to this region is not enabled on the Twilio account",
    21601: "the sender is not an SMS-capable number on this account",  # (checked)
    21602: "message body is required",
    # Short codes/alphanumeric senders and some destinations don't mix (checked).
    21606: "the 'From' number cannot send messages to this destination",
    21608: "trial accounts may only send to verified numbers",  # (checked)
    21610: "the recipient has unsubscribed (replied STOP)",
    21611: "the sender's queue is full",
    21612: "this 'To'/'From' combination cannot be routed",  # (checked)
    21614: "'To' number is not a valid mobile number",
    21617: "message body exceeds the 1600 character limit",  # (checked)
    21624: "invalid validity period",  # 1..36000 seconds (checked)
    21635: "'To' number is a landline",
    30001: "queue overflow (sent faster than the sender's throughput)",
    30002: "the Twilio account was suspended",  # (checked)
    30003: "unreachable destination handset",  # powered off, no signal, roaming (checked)
    30004: "message blocked (by the recipient or their carrier)",
    30005: "unknown destination handset (the number does not exist)",
    30006: "landline or unreachable carrier",  # (checked)
    30007: "filtered by the carrier (spam or content rules)",
    30008: "unknown carrier error",
    30009: "missing segment",
    30010: "message price exceeds the configured maximum",
    30032: "toll-free number not verified",
    30034: "message from an unregistered number (US A2P 10DLC)",
    30036: "validity period expired before sending",  # (checked)
    90007: "invalid validity period",  # 1..36000 seconds (checked)
}


def describe(code: int | None) -> str | None:
    """A short human description of a Twilio error code, or None if we don't know it."""
    if code is None:
        return None
    return DESCRIPTIONS.get(code)


def namespaced(code: int | str) -> str:
    return f"twilio:{code}"
