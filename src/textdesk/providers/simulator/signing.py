"""How the fake carrier signs its callbacks, and how the adapter checks them.

``X-Simulator-Signature`` is the hex HMAC-SHA256, keyed with the webhook secret, of
``f"{timestamp}.".encode() + raw_body``, where ``timestamp`` is the ``X-Simulator-Timestamp``
header (unix seconds). Binding the timestamp into the MAC lets the receiver refuse replays
older than a tolerance without keeping a nonce store (the scheme Stripe and Slack use).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Final

TIMESTAMP_HEADER: Final = "X-Simulator-Timestamp"
SIGNATURE_HEADER: Final = "X-Simulator-Signature"
#: How far a callback's timestamp may be from the receiver's clock, either way.
TOLERANCE_SECONDS: Final = 300
# ASCII digits only: int() also takes " 12", "1_2", "+12" and Arabic-Indic digits, and a
# 400-digit value would overflow the float arithmetic below.
_UNIX_TIME: Final = re.compile(r"[0-9]{1,12}")


def sign(secret: str, timestamp: int | str, body: bytes) -> str:
    message = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def headers(secret: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(secret, timestamp, body),
    }


def check(
    secret: str,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    *,
    now: float,
    tolerance: float = TOLERANCE_SECONDS,
) -> str | None:
    """None if the signature is valid and fresh, else the reason it is not."""
    if not timestamp or not signature:
        return "missing signature headers"
    if not _UNIX_TIME.fullmatch(timestamp):
        return "malformed timestamp"
    sent_at = int(timestamp)
    if abs(now - sent_at) > tolerance:
        return f"timestamp {sent_at} is more than {tolerance:g} s from now"
    if not hmac.compare_digest(sign(secret, timestamp, body), signature.strip().lower()):
        return "signature mismatch"
    return None
