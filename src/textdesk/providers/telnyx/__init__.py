"""Telnyx Messaging API v2. See ``docs/providers.md`` ("Telnyx") for setup."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from textdesk.httpclient import ProviderHttp
from textdesk.providers.base import ChannelContext, Provider
from textdesk.providers.telnyx.adapter import TelnyxProvider
from textdesk.providers.telnyx.config import TelnyxConfig, parse_config, validate_config

__all__ = ["PROVIDER_CLASS", "TelnyxConfig", "TelnyxProvider", "create", "validate_config"]

#: The adapter class, for its class-level facts (``dedupes_by_idempotency_key``).
PROVIDER_CLASS: type[Provider] = TelnyxProvider


def create(
    config: Mapping[str, Any],
    context: ChannelContext,
    http: ProviderHttp,
    *,
    clock: Callable[[], float] | None = None,
) -> TelnyxProvider:
    """Build the adapter for one channel. ``clock`` (Unix time now) is for tests."""
    if clock is None:
        return TelnyxProvider(parse_config(config), context, http)
    return TelnyxProvider(parse_config(config), context, http, clock=clock)
