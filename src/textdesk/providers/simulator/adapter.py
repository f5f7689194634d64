"""The simulator adapter: talks to the fake carrier over HTTP exactly as a real adapter would.

Channel config (all optional)::

    url             the carrier's base URL; default f"{TEXTDESK_BASE_URL}/simulator" (mounted)
    api_key         sent as a Bearer token; default "demo"
    webhook_secret  checks callback signatures; default "simulator-secret"
    timeout         seconds for one API call, whole request; default 10

Besides the ``Provider`` interface this adapter offers ``lookup(provider_message_id)``, an
optional reconciliation hook: the core may call it (when present) on messages left ``unknown``
by a crash or timeout, and gets the carrier's current ``StatusReport`` or None if the carrier
never accepted that id.

Error translation (codes come out as ``simulator:<code>``)::

    200                            SendResult(id, sent | the current status of a duplicate)
    400 21211 / 21614              InvalidNumber
    400 21610                      OptedOut
    401, 403                       AuthFailure
    429                            Throttled(retry_after from Retry-After)
    5xx, timeout, connection error TemporaryFailure
    any other 4xx                  PermanentFailure
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Final
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from textdesk.domain.states import MessageStatus
from textdesk.httpclient import ProviderHttp, ProviderResponse
from textdesk.providers import webhook_body
from textdesk.providers.base import (
    AuthFailure,
    ChannelContext,
    InboundSms,
    InvalidNumber,
    OptedOut,
    OutboundSms,
    PermanentFailure,
    ProviderError,
    SendResult,
    SignatureError,
    StatusReport,
    TemporaryFailure,
    Throttled,
    WebhookRequest,
)
from textdesk.providers.simulator import signing
from textdesk.providers.simulator.script import Code

NAME: Final = "simulator"
DEFAULT_API_KEY: Final = "demo"
DEFAULT_WEBHOOK_SECRET: Final = "simulator-secret"  # noqa: S105 - the fake carrier's public default
DEFAULT_TIMEOUT: Final = 10.0
_KEYS: Final = frozenset({"url", "api_key", "webhook_secret", "timeout"})

#: Carrier statuses as the core's statuses.
STATUS_MAP: Final[dict[str, MessageStatus]] = {
    "accepted": MessageStatus.SENT,
    "sent": MessageStatus.SENT,
    "delivered": MessageStatus.DELIVERED,
    "undelivered": MessageStatus.UNDELIVERED,
    "failed": MessageStatus.FAILED,
}
_INVALID_NUMBER: Final = frozenset({Code.INVALID_NUMBER.value, "21614"})
_OPTED_OUT: Final = frozenset({Code.OPTED_OUT.value})


def validate_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The channel config with defaults filled in (``url`` only if given: its default depends
    on the server's base URL). Raises ``ValueError`` naming the bad key."""
    unknown = sorted(set(config) - _KEYS)
    if unknown:
        raise ValueError(f"{unknown[0]}: unknown setting; known: {', '.join(sorted(_KEYS))}")
    out: dict[str, Any] = {}
    url = config.get("url")
    if url is not None:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError("url: must be an http:// or https:// URL")
        out["url"] = url.rstrip("/")
    for key, default in (("api_key", DEFAULT_API_KEY), ("webhook_secret", DEFAULT_WEBHOOK_SECRET)):
        value = config.get(key, default)
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{key}: must be a non-empty string")
        out[key] = value
    timeout = config.get("timeout", DEFAULT_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 300:
        raise ValueError("timeout: must be a number of seconds between 0 and 300")
    out["timeout"] = float(timeout)
    return out


def create(
    config: Mapping[str, Any], context: ChannelContext, http: ProviderHttp
) -> SimulatorProvider:
    settings = validate_config(config)
    return SimulatorProvider(
        url=settings.get("url") or f"{context.base_url.rstrip('/')}/simulator",
        api_key=settings["api_key"],
        webhook_secret=settings["webhook_secret"],
        timeout=settings["timeout"],
        http=http,
        context=context,
    )


def inbound_url_for(status_callback_url: str, context: ChannelContext) -> str:
    """Webhook paths are ``.../webhooks/simulator/{channel}/status`` and ``.../inbound``."""
    parts = urlsplit(status_callback_url)
    head, _, last = parts.path.rpartition("/")
    if last == "status":
        return urlunsplit(parts._replace(path=f"{head}/inbound"))
    return f"{context.base_url.rstrip('/')}/webhooks/{NAME}/{context.channel_id}/inbound"


class SimulatorProvider:
    name: ClassVar[str] = NAME
    dedupes_by_idempotency_key: ClassVar[bool] = True  # the carrier answers a repeat key once

    def __init__(
        self,
        *,
        url: str,
        api_key: str,
        webhook_secret: str,
        timeout: float,
        http: ProviderHttp,
        context: ChannelContext,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url.rstrip("/")
        self._api_key = api_key
        self._webhook_secret = webhook_secret
        self.timeout = timeout
        self._http = http
        self._context = context
        self._clock = clock

    def __repr__(self) -> str:  # no credentials in logs
        return f"SimulatorProvider(url={self.url!r}, channel_id={self._context.channel_id})"

    # --- outbound ------------------------------------------------------------------------------

    async def send(self, sms: OutboundSms) -> SendResult:
        payload = {
            "from": sms.sender,
            "to": sms.to,
            "body": sms.body,
            "idempotency_key": sms.idempotency_key,
            "status_callback": sms.status_callback_url,
            "inbound_url": inbound_url_for(sms.status_callback_url, self._context),
        }
        response = await self._call("POST", "/v1/messages", json=payload)
        if response.status_code != 200:
            raise _error(response)
        try:
            data = response.json()
            provider_id = data["id"]
            status = STATUS_MAP[data.get("status", "accepted")]
            segments = data.get("segments")
            if not isinstance(provider_id, str) or not provider_id:
                raise ValueError("no id")
        except (ValueError, KeyError, TypeError) as exc:
            # It may have accepted it; retrying is safe because the carrier dedupes by key.
            raise TemporaryFailure(f"{NAME}:bad_response", f"unreadable answer: {exc}") from exc
        return SendResult(
            provider_message_id=provider_id,
            status=status,
            segments=segments if isinstance(segments, int) else None,
        )

    async def lookup(self, provider_message_id: str) -> StatusReport | None:
        """The carrier's current view of one message, or None if it never accepted it."""
        response = await self._call("GET", f"/v1/messages/{quote(provider_message_id, safe='')}")
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise _error(response)
        try:
            data = response.json()
            return _report(data)
        except (ValueError, KeyError, TypeError) as exc:
            raise TemporaryFailure(f"{NAME}:bad_response", f"unreadable answer: {exc}") from exc

    async def _call(self, method: str, path: str, json: Any = None) -> ProviderResponse:
        headers = {"Authorization": f"Bearer {self._api_key}"}
        try:
            # The worker's client bounds the whole call, an httpx client only each phase:
            # asyncio.timeout bounds the whole call whichever this is.
            async with asyncio.timeout(self.timeout):
                return await self._http.request(
                    method, f"{self.url}{path}", json=json, headers=headers, timeout=self.timeout
                )
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise TemporaryFailure(
                f"{NAME}:timeout", f"no answer within {self.timeout:g} s"
            ) from exc
        except httpx.TransportError as exc:
            raise TemporaryFailure(f"{NAME}:connection", f"{type(exc).__name__}: {exc}") from exc

    # --- webhooks ------------------------------------------------------------------------------

    def verify(self, request: WebhookRequest) -> None:
        reason = signing.check(
            self._webhook_secret,
            request.header(signing.TIMESTAMP_HEADER),
            request.header(signing.SIGNATURE_HEADER),
            request.body,
            now=self._clock(),
        )
        if reason is not None:
            raise SignatureError(reason)

    def parse_inbound(self, request: WebhookRequest) -> InboundSms | None:
        data = _json_object(request)
        if data is None or not all(isinstance(data.get(k), str) for k in ("id", "from", "to")):
            return None
        body = data.get("body")
        if not isinstance(body, str) or "status" in data:
            return None
        return InboundSms(
            provider_message_id=data["id"],
            sender=data["from"],
            recipient=data["to"],
            body=body,
            received_at=webhook_body.timestamp(data.get("timestamp")),
            raw=data,
        )

    def parse_status(self, request: WebhookRequest) -> StatusReport | None:
        data = _json_object(request)
        if data is None or not isinstance(data.get("id"), str):
            return None
        try:
            return _report(data)
        except (KeyError, TypeError):
            return None


def _report(data: Mapping[str, Any]) -> StatusReport:
    status = STATUS_MAP[data["status"]]
    code = data.get("error_code")
    message = data.get("error_message")
    return StatusReport(
        provider_message_id=str(data["id"]),
        status=status,
        error_code=f"{NAME}:{code}" if code else None,
        error_message=message if isinstance(message, str) else None,
        raw=dict(data),
    )


def _json_object(request: WebhookRequest) -> dict[str, Any] | None:
    data = webhook_body.json_document(request)
    return data if isinstance(data, dict) else None


def _error(response: ProviderResponse) -> ProviderError:
    status = response.status_code
    try:
        data = response.json()
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    raw_code = data.get("code")
    vendor = str(raw_code) if raw_code else str(status)
    code = f"{NAME}:{vendor}"
    message = str(data.get("message") or data.get("detail") or response.reason_phrase)
    if status in (401, 403):
        return AuthFailure(code, message)
    if status == 429:
        return Throttled(code, message, retry_after=_retry_after(response))
    if status >= 500 or status == 408:
        return TemporaryFailure(code, message)
    if vendor in _INVALID_NUMBER:
        return InvalidNumber(code, message)
    if vendor in _OPTED_OUT:
        return OptedOut(code, message)
    return PermanentFailure(code, message)


def _retry_after(response: ProviderResponse) -> float:
    try:
        return max(0.0, float(response.headers.get("retry-after", "1")))
    except ValueError:
        return 1.0
