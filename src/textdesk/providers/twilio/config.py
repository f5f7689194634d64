"""A Twilio channel's ``config``: checked once when the channel is saved, typed for the adapter.

Error messages name the key and never echo a secret's value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DEFAULT_API_BASE = "https://api.twilio.com"

_ACCOUNT_SID = re.compile(r"AC[0-9a-fA-F]{32}")
_SERVICE_SID = re.compile(r"MG[0-9a-fA-F]{32}")
#: Every key a channel config may have.
KEYS = {
    "account_sid",
    "auth_token",
    "messaging_service_sid",
    "api_base",
    "public_url",
    "advanced_opt_out",
}


@dataclass(frozen=True)
class TwilioConfig:
    account_sid: str
    auth_token: str = field(repr=False)
    messaging_service_sid: str | None = None
    api_base: str = DEFAULT_API_BASE
    #: The URL prefix Twilio calls when textdesk sits behind a proxy that rewrites it; replaces
    #: ``TEXTDESK_BASE_URL`` when rebuilding the URL Twilio signed.
    public_url: str | None = None
    #: The Messaging Service has Advanced Opt-Out on: Twilio answers STOP/START/HELP itself and
    #: reports it in ``OptOutType``, so textdesk must not send its own confirmation.
    advanced_opt_out: bool = False


def _fail(message: str) -> ValueError:
    return ValueError(f"twilio config: {message}")


def _string(config: Mapping[str, Any], key: str) -> str | None:
    value = config.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _fail(f"{key!r} must be a string")
    value = value.strip()
    return value or None


def _url(config: Mapping[str, Any], key: str) -> str | None:
    value = _string(config, key)
    if value is None:
        return None
    if not re.match(r"https?://[^/\s]+", value) or any(c.isspace() for c in value):
        raise _fail(f"{key!r} must be an http(s) URL")
    return value.rstrip("/")


def _bool(config: Mapping[str, Any], key: str) -> bool | None:
    value = config.get(key)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"true", "1", "yes", "false", "0", "no"}:
        return value.strip().lower() in {"true", "1", "yes"}
    raise _fail(f"{key!r} must be true or false")


def validate_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Return the cleaned config, or raise ``ValueError`` naming the missing or bad key."""
    unknown = sorted(set(config) - KEYS)
    if unknown:
        raise _fail(f"unknown key {unknown[0]!r} (known: {', '.join(sorted(KEYS))})")

    sid = _string(config, "account_sid")
    if sid is None:
        raise _fail("'account_sid' is required")
    if not _ACCOUNT_SID.fullmatch(sid):
        raise _fail("'account_sid' must look like AC followed by 32 hex characters")

    token = _string(config, "auth_token")
    if token is None:
        raise _fail("'auth_token' is required")
    if any(c.isspace() for c in token):
        raise _fail("'auth_token' must not contain whitespace")

    cleaned: dict[str, Any] = {"account_sid": sid, "auth_token": token}

    service = _string(config, "messaging_service_sid")
    if service is not None:
        if not _SERVICE_SID.fullmatch(service):
            raise _fail("'messaging_service_sid' must look like MG followed by 32 hex characters")
        cleaned["messaging_service_sid"] = service
    for key in ("api_base", "public_url"):
        url = _url(config, key)
        if url is not None:
            cleaned[key] = url
    opt_out = _bool(config, "advanced_opt_out")
    if opt_out is not None:
        cleaned["advanced_opt_out"] = opt_out
    return cleaned


def parse_config(config: Mapping[str, Any]) -> TwilioConfig:
    return TwilioConfig(**validate_config(config))
