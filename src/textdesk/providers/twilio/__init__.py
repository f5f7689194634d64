"""Twilio Programmable Messaging. See ``docs/providers.md`` ("Twilio") for setup."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from textdesk.httpclient import ProviderHttp
from textdesk.providers.base import ChannelContext, Provider
from textdesk.providers.twilio.adapter import TwilioProvider
from textdesk.providers.twilio.config import TwilioConfig, parse_config, validate_config

__all__ = ["PROVIDER_CLASS", "TwilioConfig", "TwilioProvider", "create", "validate_config"]

#: The adapter class, for its class-level facts (``dedupes_by_idempotency_key``).
PROVIDER_CLASS: type[Provider] = TwilioProvider


def create(
    config: Mapping[str, Any],
    context: ChannelContext,
    http: ProviderHttp,
    *,
    clock: Callable[[], datetime] | None = None,
) -> TwilioProvider:
    """Build the adapter for one channel. ``clock`` (UTC now) is for tests."""
    if clock is None:
        return TwilioProvider(parse_config(config), context, http)
    return TwilioProvider(parse_config(config), context, http, clock=clock)
