"""Reading a webhook's body the same way in every adapter, so that one that can't be read is
refused with a 4xx saying why (``MalformedWebhook``) rather than crashing the request or being
taken for an empty callback.

A ``Content-Type`` that is present must be the provider's; an absent one is read as the
provider's format (the body is signed, so the provider is the only one who could have sent it).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from textdesk.providers.base import MalformedWebhook, WebhookRequest

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"

#: A Unix time in seconds as a signature header carries it: ASCII digits only (``str.isdigit``
#: and ``int`` also take "²" and Arabic-Indic digits) and short enough to be a float.
UNIX_TIME = re.compile(r"[0-9]{1,12}")


def media_type(request: WebhookRequest) -> str | None:
    value = request.header("content-type")
    if value is None:
        return None
    return value.split(";", 1)[0].strip().lower()


def require_media_type(request: WebhookRequest, expected: str) -> None:
    given = media_type(request)
    if given is not None and given != expected:
        raise MalformedWebhook(f"Content-Type must be {expected}, not {given}", status=415)


def text(request: WebhookRequest) -> str:
    try:
        return request.body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedWebhook(f"the body is not UTF-8 (byte {exc.start})") from None


def json_document(request: WebhookRequest) -> Any:
    """The body as JSON; ``MalformedWebhook`` if it isn't JSON the provider could have sent."""
    require_media_type(request, JSON)
    body = text(request)
    try:
        return json.loads(body)
    except RecursionError:
        # json.loads recurses per nesting level: a body of a few hundred kB of "[" would
        # otherwise end the request with a RecursionError.
        raise MalformedWebhook("the JSON body is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, and integers beyond Python's digit limit
        raise MalformedWebhook(f"the body is not JSON: {exc}") from None


def form_pairs(request: WebhookRequest) -> list[tuple[str, str]]:
    """Every form parameter, repeated names included, decoded as the provider signed them."""
    require_media_type(request, FORM)
    return parse_qsl(text(request), keep_blank_values=True)


def timestamp(value: object) -> datetime | None:
    """A provider's ISO 8601 time as an aware UTC datetime. No offset: UTC (what Telnyx and the
    simulator mean). None when it can't be read or placed (the caller uses its own clock)."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        parsed = datetime.fromisoformat(value)
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError):  # OverflowError: 9999-12-31T23:00-14:00 is year 10000
        return None
