"""SMPP 3.4 (bind_transceiver). See ``docs/providers.md`` ("SMPP") for setup and behaviour.

Modules: ``config`` (the channel's keys), ``session`` (the bound connection and its thread),
``pdu`` (encoding via smpplib), ``text`` (GSM 03.38 / UCS-2 and UDH parts), ``receipts``
(delivery receipts and message-id matching), ``inbound`` (reassembly), ``codes`` (SMPP numbers
to our statuses and errors) and ``adapter`` (the ``Provider``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from textdesk.httpclient import ProviderHttp
from textdesk.providers.base import ChannelContext
from textdesk.providers.smpp.adapter import SmppProvider
from textdesk.providers.smpp.config import SmppConfig, parse_config, validate_config
from textdesk.providers.smpp.receipts import normalize_receipt_id

__all__ = [
    "PROVIDER_CLASS",
    "SmppConfig",
    "SmppProvider",
    "create",
    "normalize_receipt_id",
    "validate_config",
]

PROVIDER_CLASS = SmppProvider


def create(
    config: Mapping[str, Any], context: ChannelContext, http: ProviderHttp | None = None
) -> SmppProvider:
    """Build the adapter for one channel (``http`` is unused: SMPP is its own connection).

    Called inside a running event loop, the session connects and binds at once so receipts and
    inbound messages flow before the first send; otherwise on ``start()`` or the first ``send()``.
    """
    provider = SmppProvider(parse_config(config), context)
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return provider
    provider.start_in(loop)
    return provider
