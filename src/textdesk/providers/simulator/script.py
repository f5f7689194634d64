"""What the fake carrier does to whom: error codes, the destination-suffix script, replies.

Behaviour is scripted by the last four digits of the destination number so that tests, demos and
benchmarks can ask for a specific outcome without configuring anything::

    to ends in   the carrier                           the adapter raises / reports
    ----------   -----------------------------------   ------------------------------
    0400         400 code 21211 (invalid number)       InvalidNumber
    0410         400 code 21610 (recipient opted out)  OptedOut
    0429         429, Retry-After: 1                   Throttled(retry_after=1)
    0500         500 code 20500                        TemporaryFailure
    0504         accepts, then answers after hang_ms   TemporaryFailure (client timeout)
    0601         accepts; DLR undelivered (30003)      StatusReport(undelivered)
    0602         accepts; DLR failed (30008)           StatusReport(failed)
    0700-0704    accepts; DLR delivered; the customer replies (see SCRIPTED_REPLIES)

Codes borrow Twilio's numbering so they look familiar in logs; they are the simulator's own and
the adapter namespaces them as ``simulator:<code>``. Every other number is accepted and then
delivered, undelivered or failed at the configured rates.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class Code(StrEnum):
    AUTH = "20003"
    NOT_FOUND = "20404"
    THROTTLED = "20429"
    INTERNAL = "20500"
    UNAVAILABLE = "20503"
    MALFORMED = "21600"
    EMPTY_BODY = "21602"
    MISSING_FIELD = "21604"
    BODY_TOO_LONG = "21617"
    INVALID_NUMBER = "21211"
    OPTED_OUT = "21610"
    REJECTED = "21408"
    # Delivery-report error codes.
    UNREACHABLE = "30003"
    UNKNOWN_HANDSET = "30005"
    LANDLINE = "30006"
    FILTERED = "30007"
    UNKNOWN_ERROR = "30008"


#: Send-time outcomes chosen by destination suffix: (HTTP status, code, message).
SEND_FAILURES: Final[dict[str, tuple[int, Code, str]]] = {
    "0400": (400, Code.INVALID_NUMBER, "the 'to' number is not a valid mobile number"),
    "0410": (400, Code.OPTED_OUT, "the recipient has opted out of messages from this sender"),
    "0429": (429, Code.THROTTLED, "too many requests; slow down"),
    "0500": (500, Code.INTERNAL, "internal error; try again"),
}

#: Accepted, but the answer comes only after ``hang_ms``: "the carrier took it, the client gave up".
HANG_SUFFIX: Final = "0504"

#: Delivery-report outcomes chosen by destination suffix: (status, error code, error message).
DLR_OUTCOMES: Final[dict[str, tuple[str, Code, str]]] = {
    "0601": ("undelivered", Code.UNREACHABLE, "unreachable destination handset"),
    "0602": ("failed", Code.UNKNOWN_ERROR, "unknown error"),
}

#: Random undelivered reports pick one of these.
UNDELIVERED_ERRORS: Final[tuple[tuple[Code, str], ...]] = (
    (Code.UNREACHABLE, "unreachable destination handset"),
    (Code.UNKNOWN_HANDSET, "unknown destination handset"),
    (Code.LANDLINE, "landline or unreachable carrier"),
    (Code.FILTERED, "message filtered by the carrier"),
)
FAILED_ERROR: Final = (Code.UNKNOWN_ERROR, "unknown error")

#: The customer answers a delivered message with exactly this.
SCRIPTED_REPLIES: Final[dict[str, str]] = {
    "0700": "STOP",
    "0701": "stop texting me please",
    "0702": "Yes, sounds good!",
    "0703": "HELP",
    "0704": "Who is this?",
}

#: What customers say at random (``reply_rate``): mostly ordinary, some opt-outs on purpose.
RANDOM_REPLIES: Final[tuple[str, ...]] = (
    "Yes",
    "yes please",
    "No thanks",
    "Sounds good!",
    "Thanks!",
    "Thank you 🙏",
    "ok",
    "👍",
    "Who is this?",
    "What time is my appointment?",
    "Can I reschedule to next week?",
    "Is this still available?",
    "How much does it cost?",
    "Can you call me instead?",
    "I'll be there",
    "Running 10 min late, sorry",
    "wrong number",
    "STOP",
    "stop",
    "Unsubscribe",
    "HELP",
    "Please remove me from your list",
    "Sí, gracias",
    "😂😂",
    "Great, see you then ❤️",
)


def suffix(number: str) -> str:
    """The last four digits that script the carrier's behaviour."""
    return number[-4:]
