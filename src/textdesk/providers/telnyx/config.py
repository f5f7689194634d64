"""A Telnyx channel's ``config``: checked once when the channel is saved, typed for the adapter.

Error messages name the key and never echo a secret's value.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

DEFAULT_API_BASE = "https://api.telnyx.com"
DEFAULT_TIMESTAMP_TOLERANCE = 300.0

#: Every key a channel config may have.
KEYS = {
    "api_key",
    "public_key",
    "messaging_profile_id",
    "api_base",
    "timestamp_tolerance",
}


@dataclass(frozen=True)
class TelnyxConfig:
    api_key: str = field(repr=False)
    #: The account's webhook public key (Mission Control: Keys & Credentials > Public Key).
    public_key: Ed25519PublicKey = field(repr=False)
    messaging_profile_id: str | None = None
    api_base: str = DEFAULT_API_BASE
    #: How far (seconds) a webhook's ``telnyx-timestamp`` may be from now: replay protection.
    timestamp_tolerance: float = DEFAULT_TIMESTAMP_TOLERANCE


def _fail(message: str) -> ValueError:
    return ValueError(f"telnyx config: {message}")


def _string(config: Mapping[str, Any], key: str) -> str | None:
    value = config.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _fail(f"{key!r} must be a string")
    value = value.strip()
    return value or None


def load_public_key(text: str) -> Ed25519PublicKey:
    """The portal shows the key as base64 of its 32 raw bytes."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _fail("'public_key' must be base64 (copy it from the Telnyx portal)") from None
    if len(raw) != 32:
        raise _fail("'public_key' must be a base64 Ed25519 public key (32 bytes)")
    return Ed25519PublicKey.from_public_bytes(raw)


def validate_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Return the cleaned config, or raise ``ValueError`` naming the missing or bad key."""
    unknown = sorted(set(config) - KEYS)
    if unknown:
        raise _fail(f"unknown key {unknown[0]!r} (known: {', '.join(sorted(KEYS))})")

    api_key = _string(config, "api_key")
    if api_key is None:
        raise _fail("'api_key' is required")
    # Telnyx v2 API keys start with "KEY"; a v1 token or a public key pasted here would not.
    if not api_key.startswith("KEY") or any(c.isspace() for c in api_key):
        raise _fail("'api_key' must be a Telnyx API v2 key (it starts with KEY)")

    public_key = _string(config, "public_key")
    if public_key is None:
        raise _fail("'public_key' is required (it verifies webhooks)")
    load_public_key(public_key)

    cleaned: dict[str, Any] = {"api_key": api_key, "public_key": public_key}

    profile = _string(config, "messaging_profile_id")
    if profile is not None:
        try:
            cleaned["messaging_profile_id"] = str(uuid.UUID(profile))
        except ValueError:
            raise _fail("'messaging_profile_id' must be a UUID") from None

    api_base = _string(config, "api_base")
    if api_base is not None:
        if not re.match(r"https?://[^/\s]+", api_base) or any(c.isspace() for c in api_base):
            raise _fail("'api_base' must be an http(s) URL")
        cleaned["api_base"] = api_base.rstrip("/")

    tolerance = config.get("timestamp_tolerance")
    if tolerance is not None:
        if isinstance(tolerance, bool) or not isinstance(tolerance, int | float | str):
            raise _fail("'timestamp_tolerance' must be a number of seconds")
        try:
            seconds = float(tolerance)
        except ValueError:
            raise _fail("'timestamp_tolerance' must be a number of seconds") from None
        if not math.isfinite(seconds) or seconds <= 0:
            raise _fail("'timestamp_tolerance' must be a positive number of seconds")
        cleaned["timestamp_tolerance"] = seconds
    return cleaned


def parse_config(config: Mapping[str, Any]) -> TelnyxConfig:
    cleaned = validate_config(config)
    return TelnyxConfig(**{**cleaned, "public_key": load_public_key(cleaned["public_key"])})
