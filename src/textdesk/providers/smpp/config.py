"""An SMPP channel's ``config``: checked once when the channel is saved, typed for the adapter.

Error messages name the key and never echo the password.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from textdesk.providers.smpp.receipts import ID_FORMATS, IdFormat

DEFAULTS: dict[str, Any] = {
    "system_type": "",
    "source_ton": 1,  # international
    "source_npi": 1,  # ISDN (E.164)
    "dest_ton": 1,
    "dest_npi": 1,
    "receipt_id_format": "auto",
    "enquire_link_interval": 30.0,
    "submit_timeout": 10.0,
    "window": 10,
    "reassembly_timeout": 300.0,
}

_REQUIRED = ("host", "port", "system_id", "password")
#: Every key a channel config may have; ``docs/providers.md`` documents each (a test checks).
KEYS = frozenset(_REQUIRED) | frozenset(DEFAULTS)

# C-Octet String sizes of bind_transceiver (SMPP 3.4, 4.1.5), less the terminating NUL.
_MAX_LENGTH = {"system_id": 15, "password": 8, "system_type": 12}


@dataclass(frozen=True)
class SmppConfig:
    host: str
    port: int
    system_id: str
    password: str = field(repr=False)
    system_type: str = ""
    source_ton: int = 1
    source_npi: int = 1
    dest_ton: int = 1
    dest_npi: int = 1
    receipt_id_format: IdFormat = "auto"
    enquire_link_interval: float = 30.0
    submit_timeout: float = 10.0
    window: int = 10
    reassembly_timeout: float = 300.0


def _fail(message: str) -> ValueError:
    return ValueError(f"smpp config: {message}")


def _string(config: Mapping[str, Any], key: str, *, required: bool) -> str:
    value = config.get(key)
    if value is None:
        if required:
            raise _fail(f"{key!r} is required")
        return str(DEFAULTS[key])
    if not isinstance(value, str):
        raise _fail(f"{key!r} must be a string")
    value = value.strip() if key != "password" else value
    if required and not value and key != "password":  # some SMSCs bind without one
        raise _fail(f"{key!r} is required")
    limit = _MAX_LENGTH.get(key)
    if limit is not None and len(value) > limit:
        raise _fail(f"{key!r} is at most {limit} characters in SMPP 3.4")
    if not value.isascii() or any(ord(c) < 0x20 for c in value):
        raise _fail(f"{key!r} must be printable ASCII")
    return value


def _int(config: Mapping[str, Any], key: str, low: int, high: int) -> int:
    value = config.get(key, DEFAULTS.get(key))
    if value is None:
        raise _fail(f"{key!r} is required")
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _fail(f"{key!r} must be a whole number from {low} to {high}")
    return value


def _seconds(config: Mapping[str, Any], key: str, low: float, high: float) -> float:
    value = config.get(key, DEFAULTS[key])
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise _fail(f"{key!r} must be a number of seconds") from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise _fail(f"{key!r} must be a number of seconds from {low:g} to {high:g}")
    return float(value)


def validate_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Return the cleaned config with defaults filled in, or raise ``ValueError`` naming the
    missing or bad key."""
    unknown = sorted(set(config) - KEYS)
    if unknown:
        raise _fail(f"unknown key {unknown[0]!r} (known: {', '.join(sorted(KEYS))})")
    cleaned: dict[str, Any] = {
        "host": _string(config, "host", required=True),
        "port": _int(config, "port", 1, 65535),
        "system_id": _string(config, "system_id", required=True),
        "password": _string(config, "password", required=True),
        "system_type": _string(config, "system_type", required=False),
    }
    for key in ("source_ton", "source_npi", "dest_ton", "dest_npi"):
        cleaned[key] = _int(config, key, 0, 255)
    id_format = config.get("receipt_id_format", DEFAULTS["receipt_id_format"])
    if id_format not in ID_FORMATS:
        raise _fail(f"'receipt_id_format' must be one of {', '.join(ID_FORMATS)}")
    cleaned["receipt_id_format"] = id_format
    cleaned["enquire_link_interval"] = _seconds(config, "enquire_link_interval", 0.1, 3600)
    cleaned["submit_timeout"] = _seconds(config, "submit_timeout", 0.1, 300)
    cleaned["reassembly_timeout"] = _seconds(config, "reassembly_timeout", 0.1, 86_400)
    cleaned["window"] = _int(config, "window", 1, 1000)
    return cleaned


def parse_config(config: Mapping[str, Any]) -> SmppConfig:
    cleaned = validate_config(config)
    cleaned["receipt_id_format"] = cast(IdFormat, cleaned["receipt_id_format"])
    return SmppConfig(**cleaned)
