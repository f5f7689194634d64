"""Twilio Programmable Messaging (REST API 2010-04-01).

Send: ``POST {api_base}/2010-04-01/Accounts/{AccountSid}/Messages.json``, HTTP basic auth with
the Account SID and Auth Token, form-encoded. Twilio answers 201 with the Message resource.
Inbound messages and status callbacks arrive as signed form POSTs (see ``signature.py``).

Twilio has no idempotency key for creating messages: a retried POST is a second message. So
``dedupes_by_idempotency_key`` is False and a send whose outcome is unknown must not be re-sent
blindly (the core resolves it from the status callback instead).

Lookup (reconciling ``unknown`` messages): ``GET .../Messages/{Sid}.json``, whose ``status`` and
``error_code`` map as in a status callback; 404 means Twilio does not know the Sid.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar
from urllib.parse import parse_qs, quote, urlsplit

import httpx

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
from textdesk.providers.twilio import codes, signature
from textdesk.providers.twilio.codes import Kind
from textdesk.providers.twilio.config import TwilioConfig

#: Twilio accepts ValidityPeriod between 1 and 36000 seconds (errors 21624/90007).
MIN_VALIDITY = 1
MAX_VALIDITY = 36_000

_KIND_TO_ERROR: dict[Kind, type[ProviderError]] = {
    Kind.INVALID_NUMBER: InvalidNumber,
    Kind.OPTED_OUT: OptedOut,
    Kind.AUTH: AuthFailure,
    Kind.THROTTLED: Throttled,
    Kind.TEMPORARY: TemporaryFailure,
    Kind.PERMANENT: PermanentFailure,
}


def _utcnow() -> datetime:
    return datetime.now(UTC)


class TwilioProvider:
    name: ClassVar[str] = "twilio"
    dedupes_by_idempotency_key: ClassVar[bool] = False

    def __init__(
        self,
        config: TwilioConfig,
        context: ChannelContext,
        http: ProviderHttp,
        *,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._config = config
        self._context = context
        self._http = http
        self._clock = clock

    @property
    def advanced_opt_out(self) -> bool:
        """Twilio answers STOP/START/HELP itself (Advanced Opt-Out on the Messaging Service)."""
        return self._config.advanced_opt_out

    def __repr__(self) -> str:
        sid = self._config.account_sid
        return (
            f"<TwilioProvider channel={self._context.channel_id} "
            f"account_sid={sid[:2]}…{sid[-4:]} auth_token=<hidden>>"
        )

    # --- sending ---------------------------------------------------------------------------

    @property
    def _messages_url(self) -> str:
        return (
            f"{self._config.api_base}/2010-04-01/Accounts/{self._config.account_sid}/Messages.json"
        )

    def _form(self, sms: OutboundSms) -> dict[str, str]:
        form = {"To": sms.to, "Body": sms.body, "StatusCallback": sms.status_callback_url}
        if self._config.messaging_service_sid:
            # The service picks the sender from its pool (sticky sender keeps one per contact).
            form["MessagingServiceSid"] = self._config.messaging_service_sid
        else:
            form["From"] = sms.sender
        if sms.valid_until is not None:
            form["ValidityPeriod"] = str(self._validity_seconds(sms.valid_until))
        return form

    def _validity_seconds(self, valid_until: datetime) -> int:
        if valid_until.tzinfo is None:
            valid_until = valid_until.replace(tzinfo=UTC)
        seconds = math.floor((valid_until - self._clock()).total_seconds())
        return max(MIN_VALIDITY, min(MAX_VALIDITY, seconds))

    async def send(self, sms: OutboundSms) -> SendResult:
        try:
            response = await self._http.post(
                self._messages_url,
                data=self._form(sms),
                auth=(self._config.account_sid, self._config.auth_token),
                headers={"Accept": "application/json"},
            )
        except httpx.TransportError as exc:
            raise _transport_error(exc) from None
        if response.is_success:
            return _send_result(response)
        raise _http_error(response)

    # --- webhooks --------------------------------------------------------------------------

    def _signed_url(self, request: WebhookRequest) -> str:
        """The URL Twilio computed the signature over: ``public_url`` replaces
        ``TEXTDESK_BASE_URL`` when a proxy in between changes what textdesk sees."""
        public = self._config.public_url
        base = self._context.base_url.rstrip("/")
        if public and request.url.startswith(base):
            return public + request.url[len(base) :]
        return request.url

    def verify(self, request: WebhookRequest) -> None:
        given = request.header("X-Twilio-Signature")
        if not given:
            raise SignatureError("missing X-Twilio-Signature header")
        url = self._signed_url(request)
        # A JSON callback signs a hash of its body instead of form parameters.
        signed_body = "bodySHA256" in parse_qs(urlsplit(url).query)
        params = [] if signed_body else _form_pairs(request)
        if not signature.is_valid(self._config.auth_token, url, params, request.body, given):
            raise SignatureError(f"X-Twilio-Signature does not match for {url}")

    def parse_inbound(self, request: WebhookRequest) -> InboundSms | None:
        form = _form_dict(request)
        sid = form.get("MessageSid") or form.get("SmsSid")
        if not sid or "From" not in form or "Body" not in form:
            return None
        opt_out = form.get("OptOutType", "").strip().upper() or None
        return InboundSms(
            provider_message_id=sid,
            sender=form["From"],
            recipient=form.get("To", self._context.sender),
            body=form["Body"],
            provider_opt_out=opt_out,
            raw=form,
        )

    def parse_status(self, request: WebhookRequest) -> StatusReport | None:
        form = _form_dict(request)
        sid = form.get("MessageSid") or form.get("SmsSid")
        reported = (form.get("MessageStatus") or form.get("SmsStatus") or "").strip().lower()
        status = codes.STATUSES.get(reported)
        if not sid or status is None:
            return None
        return _report(sid, status, form.get("ErrorCode"), form.get("ErrorMessage"), form)

    # --- reconciliation --------------------------------------------------------------------

    async def lookup(self, provider_message_id: str) -> StatusReport | None:
        """Fetch the Message resource (``GET .../Messages/{Sid}.json``): its ``status`` and
        ``error_code`` mean what they mean in a status callback. None: Twilio answered 404."""
        url = (
            f"{self._config.api_base}/2010-04-01/Accounts/{self._config.account_sid}"
            f"/Messages/{quote(provider_message_id, safe='')}.json"
        )
        try:
            response = await self._http.get(
                url,
                auth=(self._config.account_sid, self._config.auth_token),
                headers={"Accept": "application/json"},
            )
        except httpx.TransportError as exc:
            raise _transport_error(exc) from None
        if response.status_code == 404:
            return None
        if not response.is_success:
            raise _http_error(response)
        body = _json(response)
        reported = str(body.get("status") or "").strip().lower()
        if reported not in codes.STATUSES:
            raise TemporaryFailure(
                "twilio:bad_response", f"HTTP {response.status_code} with status {reported!r}"
            )
        # Twilio knows the message, so it accepted it: a status that is no news to a callback
        # ("queued", "sending") is news here: the message left us.
        status = codes.STATUSES[reported] or MessageStatus.SENT
        raw_code = body.get("error_code")
        message = body.get("error_message")
        return _report(
            str(body.get("sid") or provider_message_id),
            status,
            None if raw_code is None else str(raw_code),
            message if isinstance(message, str) else None,
            body,
        )


# --- helpers ---------------------------------------------------------------------------------


def _report(
    sid: str,
    status: MessageStatus,
    raw_code: str | None,
    fallback_message: str | None,
    raw: Mapping[str, Any],
) -> StatusReport:
    """A status callback's or a looked-up Message's status, error code ("0": none) and text."""
    error_code: str | None = None
    error_message: str | None = None
    number: int | None = None
    raw_code = (raw_code or "").strip()
    if raw_code and raw_code != "0":
        error_code = codes.namespaced(raw_code)
        number = int(raw_code) if raw_code.isdigit() else None
        error_message = codes.describe(number) or fallback_message or None
    return StatusReport(
        provider_message_id=sid,
        status=status,
        error_code=error_code,
        error_message=error_message,
        raw=raw,
        # 21610 after Twilio accepted the message: the recipient had replied STOP to Twilio.
        opted_out=number is not None and codes.SEND_ERRORS.get(number) is codes.Kind.OPTED_OUT,
    )


def _form_pairs(request: WebhookRequest) -> list[tuple[str, str]]:
    """Every form parameter, repeated names included (they are all signed). Read from the body
    alone, and strictly, so that the parameters checked are the parameters used: a body that
    is not UTF-8 form data is refused (``MalformedWebhook``), never signed as "no parameters"."""
    if request.body:
        return webhook_body.form_pairs(request)
    return list(request.form.items())


def _form_dict(request: WebhookRequest) -> dict[str, str]:
    return dict(_form_pairs(request))


def _json(response: ProviderResponse) -> Mapping[str, Any]:
    try:
        data = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _send_result(response: ProviderResponse) -> SendResult:
    body = _json(response)
    sid = body.get("sid")
    if not isinstance(sid, str) or not sid:
        # Twilio said yes but we can't tell to what: the message probably exists.
        raise AmbiguousFailure(
            "twilio:bad_response", f"HTTP {response.status_code} without a message sid"
        )
    segments = str(body.get("num_segments") or "")  # Twilio sends it as a string
    return SendResult(
        provider_message_id=sid, segments=int(segments) if segments.isdigit() else None
    )


def _retry_after(response: ProviderResponse) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    value = value.strip()
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
    body = _json(response)
    raw_code = body.get("code")
    number = raw_code if isinstance(raw_code, int) else None
    if isinstance(raw_code, str) and raw_code.isdigit():
        number = int(raw_code)
    status = response.status_code
    code = codes.namespaced(number) if number is not None else f"twilio:http_{status}"
    message = str(body.get("message") or codes.describe(number) or f"HTTP {status}")
    retry_after = _retry_after(response)

    if status == 429:
        return Throttled(code, message, retry_after=retry_after)
    if status >= 500:
        return TemporaryFailure(code, message, retry_after=retry_after)
    if number is not None and number in codes.SEND_ERRORS:
        cls = _KIND_TO_ERROR[codes.SEND_ERRORS[number]]
        return cls(code, message, retry_after=retry_after if cls.retryable else None)
    if status == 401:
        return AuthFailure(code, message)
    return PermanentFailure(code, message)


def _transport_error(exc: httpx.TransportError) -> TemporaryFailure:
    # A refused or timed-out connection never carried the request: safe to retry. A read timeout
    # or a connection dropped mid-exchange may have reached Twilio: the outcome is unknown.
    detail = f"{type(exc).__name__}: {str(exc) or 'no detail'}"
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return TemporaryFailure("twilio:connect", detail)
    if isinstance(exc, httpx.TimeoutException):
        return AmbiguousFailure("twilio:timeout", detail)
    return AmbiguousFailure("twilio:network", detail)
