"""The provider interface and its error taxonomy. Only adapters know vendor codes.

::

    ProviderError(code, message, retryable, retry_after)   a send or lookup failed
    ├── Throttled          retryable; the provider said slow down (HTTP 429, SMPP ESME_RTHROTTLED)
    ├── TemporaryFailure   retryable; 5xx, connection refused, SMPP window full
    │   ├── AmbiguousFailure  the request may have reached the provider (read timeout, connection
    │   │                     dropped after sending): re-sent only where the provider
    │   │                     de-duplicates by our idempotency key, otherwise ``unknown``
    │   └── Unavailable    the channel cannot send anything now and the message never left
    │                      (SMPP not bound): the channel pauses, the message waits, no attempt
    ├── PermanentFailure   not retryable; bad request, rejected content, carrier block
    │   ├── InvalidNumber  the destination is not a reachable mobile number
    │   └── OptedOut       the recipient opted out at the provider (Twilio 21610, Telnyx 40300)
    └── AuthFailure        not retryable; credentials wrong or account suspended

    SignatureError         a webhook's signature did not verify (answer 403, change nothing)
    MalformedWebhook       a webhook that can't be read: not UTF-8, not JSON, nested too deep,
                           the wrong media type (answer its 4xx ``status``, change nothing)

The core decides what to do with each (retry with backoff, fail, record an opt-out, pause the
channel: ``AuthFailure`` and ``Unavailable`` pause it at once, and the message waits for it
without using an attempt); adapters only translate.

An adapter is built per channel from the channel's ``config`` (credentials, never logged) and
the shared provider client (``textdesk.httpclient.ProviderHttp``). Sending is async because
providers answer in 100-500 ms and throughput comes from keeping many calls in flight.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, Protocol, TypeGuard

from textdesk.domain.states import MessageStatus


class ProviderError(Exception):
    retryable: ClassVar[bool] = False

    def __init__(self, code: str, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retry_after = retry_after


class Throttled(ProviderError):
    retryable = True


class TemporaryFailure(ProviderError):
    retryable = True


class AmbiguousFailure(TemporaryFailure):
    def __init__(
        self,
        code: str,
        message: str,
        *,
        retry_after: float | None = None,
        provider_message_id: str | None = None,
    ) -> None:
        super().__init__(code, message, retry_after=retry_after)
        #: An id the adapter will report this message's later news under (SMPP: receipts and a
        #: late answer of a submit left in doubt); the core stores it on the message.
        self.provider_message_id = provider_message_id


class Unavailable(TemporaryFailure):
    pass


class PermanentFailure(ProviderError):
    retryable = False


class InvalidNumber(PermanentFailure):
    pass


class OptedOut(PermanentFailure):
    pass


class AuthFailure(ProviderError):
    retryable = False


class SignatureError(Exception):
    """A webhook failed verification. The message says why (for logs, not for the caller)."""


class MalformedWebhook(ValueError):
    """A webhook that can't be read. The message says what was wrong; it is answered with
    ``status`` (400, or 415 for the wrong media type). A readable callback that carries nothing
    for us is not malformed: ``parse_*`` return None for it and it is answered 200."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class OutboundSms:
    """What the dispatcher hands an adapter."""

    message_id: int
    sender: str  # E.164 or short code of the channel
    to: str  # E.164
    body: str
    idempotency_key: str  # stable across retries of the same message
    status_callback_url: str  # where delivery reports for this message should go
    valid_until: datetime | None = None


@dataclass(frozen=True)
class SendResult:
    provider_message_id: str
    # Some providers answer with a final or further status at once (SMPP receipts can beat the
    # submit response; the simulator can be told to deliver instantly).
    status: MessageStatus = MessageStatus.SENT
    segments: int | None = None


@dataclass(frozen=True)
class InboundSms:
    provider_message_id: str
    sender: str  # the customer's number, E.164
    recipient: str  # our number
    body: str
    received_at: datetime | None = None
    # Provider-side opt-out signal (e.g. Twilio's OptOutType=STOP when it already replied).
    provider_opt_out: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StatusReport:
    provider_message_id: str
    status: MessageStatus  # sent, delivered, undelivered or failed
    error_code: str | None = None
    error_message: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)
    #: The provider refused or dropped the message because the recipient opted out with it
    #: (Twilio 21610, Telnyx 40300 in a callback): the core records the opt-out, as for a STOP.
    opted_out: bool = False


@dataclass(frozen=True)
class WebhookRequest:
    """A provider's HTTP callback, decoupled from the web framework."""

    method: str
    url: str  # the public URL the provider called: TEXTDESK_BASE_URL + the path and query received
    headers: Mapping[str, str]  # lower-case names
    body: bytes
    form: Mapping[str, str] = field(default_factory=dict)  # parsed x-www-form-urlencoded body

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class WebhookKind(StrEnum):
    INBOUND = "inbound"
    STATUS = "status"


class Provider(Protocol):
    """One adapter instance per channel."""

    name: ClassVar[str]
    #: True if sending twice with the same idempotency key delivers once. Only then may the
    #: dispatcher re-send a message whose outcome is unknown.
    dedupes_by_idempotency_key: ClassVar[bool]

    async def send(self, sms: OutboundSms) -> SendResult:
        """Hand one message to the provider; raise a ``ProviderError`` on failure."""
        ...

    def verify(self, request: WebhookRequest) -> None:
        """Raise ``SignatureError`` unless the request provably comes from the provider."""
        ...

    def parse_inbound(self, request: WebhookRequest) -> InboundSms | None:
        """An inbound message, or None for a callback that carries none. Raise
        ``MalformedWebhook`` for one that can't be read."""
        ...

    def parse_status(self, request: WebhookRequest) -> StatusReport | None:
        """A delivery report, or None for a callback that carries none (answer 200 anyway).
        Raise ``MalformedWebhook`` for one that can't be read."""
        ...


class SupportsLookup(Protocol):
    """An optional capability: ask the provider what became of one message.

    The core calls it on messages left ``unknown`` (a crash or timeout after the provider may
    have accepted them) to reconcile them without re-sending (``delivery/reconcile.py``)."""

    async def lookup(self, provider_message_id: str) -> StatusReport | None:
        """The provider's current status of the message, or None if it does not know the id.
        Raise a ``ProviderError`` when it could not answer (timeout, 5xx, bad credentials).
        A status that is not yet news (queued at the provider) is reported as ``sent``."""
        ...


def offers_lookup(provider: object) -> TypeGuard[SupportsLookup]:
    """Whether an adapter (instance or class) has the optional ``lookup`` capability."""
    return callable(getattr(provider, "lookup", None))


class ReportSink(Protocol):
    """Where adapters that receive over a persistent connection (SMPP) push what arrives.
    HTTP providers don't need it: their callbacks come through the webhook routes."""

    async def inbound(self, channel_id: int, sms: InboundSms) -> None: ...

    async def status(self, channel_id: int, report: StatusReport) -> None: ...


@dataclass(frozen=True)
class ChannelContext:
    """What a registry hands an adapter's factory besides the channel's own ``config``."""

    channel_id: int
    sender: str
    base_url: str  # TEXTDESK_BASE_URL, for webhook URLs
    sink: ReportSink | None = None
