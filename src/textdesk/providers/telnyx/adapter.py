"""Telnyx Messaging API v2.

Send: ``POST {api_base}/v2/messages`` with ``Authorization: Bearer <api key>`` and a JSON body;
Telnyx answers ``{"data": {"id": ..., "parts": ..., "to": [{"status": "queued"}]}}``. Delivery
events go to the per-message ``webhook_url``; ``use_profile_webhooks: false`` keeps Telnyx from
also sending them to whatever the messaging profile is configured with.

Webhooks (inbound ``message.received``, outbound ``message.sent`` / ``message.finalized``) are
JSON, signed with Ed25519: ``telnyx-signature-ed25519`` is the base64 signature of
``f"{telnyx-timestamp}|{raw body}"`` under the account's public key.

Idempotency: Telnyx documents a general ``Idempotency-Key`` header ("use this header on endpoints
whose API reference declares Idempotency-Key support", successful responses replayed for 24 h:
https://developers.telnyx.com/docs/development/api-fundamentals/idempotency). The send-message
reference does not declare it (neither does the SDK generated from Telnyx's OpenAPI spec), so we
can't rely on it: the header is sent, as it costs nothing and helps if Telnyx honours it, but
``dedupes_by_idempotency_key`` stays False. Note that even where supported only *successful*
responses are replayed, so a send whose outcome was unknown could still go out twice.

Lookup (reconciling ``unknown`` messages): ``GET /v2/messages/{id}``; its ``data`` is shaped like
a webhook event's ``payload`` (``to[0].status``, ``errors``) and maps the same way; 404 means
Telnyx does not know the id.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar
from urllib.parse import quote

import httpx
from cryptography.exceptions import InvalidSignature

from textdesk.domain.states import MessageStatus
from textdesk.httpclient import ProviderHttp, ProviderResponse
from textdesk.providers import webhook_body
from textdesk.providers.base import (
    AmbiguousFailure,
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
from textdesk.providers.telnyx import codes
from textdesk.providers.telnyx.codes import Kind
from textdesk.providers.telnyx.config import TelnyxConfig

SIGNATURE_HEADER = "telnyx-signature-ed25519"
TIMESTAMP_HEADER = "telnyx-timestamp"

# Telnyx's documented key format; anything else is sent as a stable digest of our key.
_IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9_:-]{1,255}")

_KIND_TO_ERROR: dict[Kind, type[ProviderError]] = {
    Kind.INVALID_NUMBER: InvalidNumber,
    Kind.OPTED_OUT: OptedOut,
    Kind.AUTH: AuthFailure,
    Kind.THROTTLED: Throttled,
    Kind.TEMPORARY: TemporaryFailure,
    Kind.PERMANENT: PermanentFailure,
}


class TelnyxProvider:
    name: ClassVar[str] = "telnyx"
    dedupes_by_idempotency_key: ClassVar[bool] = False  # see the module docstring

    def __init__(
        self,
        config: TelnyxConfig,
        context: ChannelContext,
        http: ProviderHttp,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._context = context
        self._http = http
        self._clock = clock

    def __repr__(self) -> str:
        profile = self._config.messaging_profile_id or "-"
        return (
            f"<TelnyxProvider channel={self._context.channel_id} "
            f"messaging_profile={profile} api_key=<hidden>>"
        )

    # --- sending ---------------------------------------------------------------------------

    def _payload(self, sms: OutboundSms) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "from": sms.sender,
            "to": sms.to,
            "text": sms.body,
            "webhook_url": sms.status_callback_url,
            "use_profile_webhooks": False,
        }
        if self._config.messaging_profile_id:
            payload["messaging_profile_id"] = self._config.messaging_profile_id
        # sms.valid_until is not sent: /v2/messages has no per-message validity period.
        return payload

    async def send(self, sms: OutboundSms) -> SendResult:
        try:
            response = await self._http.post(
                f"{self._config.api_base}/v2/messages",
                json=self._payload(sms),
                headers={
                    "Authorization": f"Bearer {self._config.api_key}",
                    "Accept": "application/json",
                    "Idempotency-Key": idempotency_key(sms.idempotency_key),
                },
            )
        except httpx.TransportError as exc:
            raise _transport_error(exc) from None
        if response.is_success:
            return _send_result(response)
        raise _http_error(response)

    # --- webhooks --------------------------------------------------------------------------

    def verify(self, request: WebhookRequest) -> None:
        signature = request.header(SIGNATURE_HEADER)
        timestamp = request.header(TIMESTAMP_HEADER)
        if not signature:
            raise SignatureError(f"missing {SIGNATURE_HEADER} header")
        if not timestamp:
            raise SignatureError(f"missing {TIMESTAMP_HEADER} header")
        timestamp = timestamp.strip()
        if not webhook_body.UNIX_TIME.fullmatch(timestamp):
            raise SignatureError(f"{TIMESTAMP_HEADER} is not a Unix time")
        skew = abs(self._clock() - int(timestamp))
        if skew > self._config.timestamp_tolerance:
            raise SignatureError(
                f"{TIMESTAMP_HEADER} is {skew:.0f}s from now "
                f"(tolerance {self._config.timestamp_tolerance:.0f}s): stale or replayed"
            )
        try:
            raw_signature = base64.b64decode(signature.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise SignatureError(f"{SIGNATURE_HEADER} is not base64") from None
        try:
            self._config.public_key.verify(raw_signature, timestamp.encode() + b"|" + request.body)
        except InvalidSignature:
            raise SignatureError(f"{SIGNATURE_HEADER} does not verify") from None

    def parse_inbound(self, request: WebhookRequest) -> InboundSms | None:
        event = _event(request)
        if event is None or event.get("event_type") != "message.received":
            return None
        payload = _mapping(event.get("payload"))
        sender = _mapping(payload.get("from")).get("phone_number")
        recipients = payload.get("to")
        first = _mapping(recipients[0]) if isinstance(recipients, list) and recipients else {}
        message_id = payload.get("id")
        if not isinstance(message_id, str) or not isinstance(sender, str):
            return None
        text = payload.get("text")
        return InboundSms(
            provider_message_id=message_id,
            sender=sender,
            recipient=str(first.get("phone_number") or self._context.sender),
            body=text if isinstance(text, str) else "",
            received_at=webhook_body.timestamp(payload.get("received_at")),
            raw=event,
        )

    def parse_status(self, request: WebhookRequest) -> StatusReport | None:
        event = _event(request)
        if event is None or event.get("event_type") not in {"message.sent", "message.finalized"}:
            return None
        payload = _mapping(event.get("payload"))
        message_id = payload.get("id")
        status = codes.STATUSES.get(_recipient_status(payload))
        if not isinstance(message_id, str) or status is None:
            return None
        return _report(message_id, status, payload, event)

    # --- reconciliation --------------------------------------------------------------------

    async def lookup(self, provider_message_id: str) -> StatusReport | None:
        """Retrieve the message (``GET /v2/messages/{id}``): ``data`` has the shape of a webhook
        event's ``payload``, mapped the same way. None: Telnyx answered 404."""
        try:
            response = await self._http.get(
                f"{self._config.api_base}/v2/messages/{quote(provider_message_id, safe='')}",
                headers={
                    "Authorization": f"Bearer {self._config.api_key}",
                    "Accept": "application/json",
                },
            )
        except httpx.TransportError as exc:
            raise _transport_error(exc) from None
        if response.status_code == 404:
            return None
        if not response.is_success:
            raise _http_error(response)
        document = _json(response)
        data = _mapping(document.get("data"))
        reported = _recipient_status(data)
        if reported not in codes.STATUSES:
            raise TemporaryFailure(
                "telnyx:bad_response",
                f"HTTP {response.status_code} with to[0].status {reported!r}",
            )
        # Telnyx knows the message, so it accepted it: "queued" or "sending", no news to a
        # webhook, is news here: the message left us.
        status = codes.STATUSES[reported] or MessageStatus.SENT
        message_id = data.get("id")
        return _report(
            message_id if isinstance(message_id, str) else provider_message_id,
            status,
            data,
            document,
        )


# --- helpers ---------------------------------------------------------------------------------


def _recipient_status(payload: Mapping[str, Any]) -> str:
    recipients = payload.get("to")
    first = _mapping(recipients[0]) if isinstance(recipients, list) and recipients else {}
    return str(first.get("status") or "").lower()


def _report(
    message_id: str, status: MessageStatus, payload: Mapping[str, Any], raw: Mapping[str, Any]
) -> StatusReport:
    """A webhook's or a retrieved message's status with its first error, if any."""
    error_code = error_message = None
    code = ""
    errors = payload.get("errors")
    if isinstance(errors, list) and errors:
        first_error = _mapping(errors[0])
        code = str(first_error.get("code") or "").strip()
        if code:
            error_code = codes.namespaced(code)
        error_message = (
            _text(first_error.get("title"))
            or _text(first_error.get("detail"))
            or codes.describe(code)
        )
    return StatusReport(
        provider_message_id=message_id,
        status=status,
        error_code=error_code,
        error_message=error_message,
        raw=raw,
        opted_out=codes.SEND_ERRORS.get(code) is codes.Kind.OPTED_OUT,
    )


def idempotency_key(key: str) -> str:
    """Our key if Telnyx accepts its format, else a stable digest of it (same on every retry)."""
    if _IDEMPOTENCY_KEY.fullmatch(key):
        return key
    return "textdesk:" + hashlib.sha256(key.encode()).hexdigest()


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _event(request: WebhookRequest) -> Mapping[str, Any] | None:
    data = _mapping(webhook_body.json_document(request)).get("data")
    return data if isinstance(data, dict) else None


def _json(response: ProviderResponse) -> Mapping[str, Any]:
    try:
        return _mapping(response.json())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}


def _send_result(response: ProviderResponse) -> SendResult:
    data = _mapping(_json(response).get("data"))
    message_id = data.get("id")
    if not isinstance(message_id, str) or not message_id:
        # Telnyx said yes but we can't tell to what: the message probably exists.
        raise AmbiguousFailure(
            "telnyx:bad_response", f"HTTP {response.status_code} without data.id"
        )
    parts = data.get("parts")
    return SendResult(
        provider_message_id=message_id,
        segments=parts if isinstance(parts, int) and not isinstance(parts, bool) else None,
    )


def _retry_after(response: ProviderResponse) -> float | None:
    value = (response.headers.get("Retry-After") or "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _http_error(response: ProviderResponse) -> ProviderError:
    errors = _json(response).get("errors")
    first = _mapping(errors[0]) if isinstance(errors, list) and errors else {}
    raw_code = str(first.get("code") or "").strip()
    status = response.status_code
    code = codes.namespaced(raw_code) if raw_code else f"telnyx:http_{status}"
    message = (
        _text(first.get("detail"))
        or _text(first.get("title"))
        or codes.describe(raw_code)
        or f"HTTP {status}"
    )
    retry_after = _retry_after(response)

    if status == 429:
        return Throttled(code, message, retry_after=retry_after)
    if status >= 500:
        return TemporaryFailure(code, message, retry_after=retry_after)
    kind = codes.SEND_ERRORS.get(raw_code)
    if kind is not None:
        cls = _KIND_TO_ERROR[kind]
        return cls(code, message, retry_after=retry_after if cls.retryable else None)
    if status == 401:
        return AuthFailure(code, message)
    return PermanentFailure(code, message)


def _transport_error(exc: httpx.TransportError) -> TemporaryFailure:
    # A refused or timed-out connection never carried the request: safe to retry. A read timeout
    # or a connection dropped mid-exchange may have reached Telnyx: the outcome is unknown.
    detail = f"{type(exc).__name__}: {str(exc) or 'no detail'}"
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return TemporaryFailure("telnyx:connect", detail)
    if isinstance(exc, httpx.TimeoutException):
        return AmbiguousFailure("telnyx:timeout", detail)
    return AmbiguousFailure("telnyx:network", detail)
