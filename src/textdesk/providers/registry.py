"""The list of providers. Nothing else imports a provider package directly.

Each provider package exposes ``create(config, context, http) -> Provider``,
``validate_config(config) -> dict`` (raises ``ValueError`` naming the missing or bad key) and
``PROVIDER_CLASS`` (the adapter class, for its class-level facts).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, Protocol, cast

from textdesk.httpclient import ProviderHttp
from textdesk.providers.base import ChannelContext, Provider
from textdesk.providers.base import offers_lookup as offers_lookup_capability

PROVIDERS: dict[str, str] = {
    "simulator": "textdesk.providers.simulator",
    "twilio": "textdesk.providers.twilio",
    "telnyx": "textdesk.providers.telnyx",
    "smpp": "textdesk.providers.smpp",
}


class _ProviderModule(Protocol):
    def create(
        self, config: Mapping[str, Any], context: ChannelContext, http: ProviderHttp
    ) -> Provider: ...

    def validate_config(self, config: Mapping[str, Any]) -> dict[str, Any]: ...

    PROVIDER_CLASS: type[Provider]


def _module(name: str) -> _ProviderModule:
    try:
        path = PROVIDERS[name]
    except KeyError:
        raise ValueError(f"unknown provider {name!r}; known: {', '.join(PROVIDERS)}") from None
    return cast(_ProviderModule, importlib.import_module(path))


def create(
    name: str, config: Mapping[str, Any], context: ChannelContext, http: ProviderHttp
) -> Provider:
    return _module(name).create(config, context, http)


def validate_config(name: str, config: Mapping[str, Any]) -> dict[str, Any]:
    return _module(name).validate_config(config)


def dedupes_by_idempotency_key(name: str) -> bool:
    """Whether re-sending a message with the same key is safe with this provider."""
    try:
        module = _module(name)
    except ImportError:  # an optional provider whose package is not installed
        return False
    cls = getattr(module, "PROVIDER_CLASS", None)
    return bool(getattr(cls, "dedupes_by_idempotency_key", False))


def offers_lookup(name: str) -> bool:
    """Whether this provider's adapter can look up a message's status (``SupportsLookup``)."""
    try:
        module = _module(name)
    except ImportError:  # an optional provider whose package is not installed
        return False
    return offers_lookup_capability(getattr(module, "PROVIDER_CLASS", None))
