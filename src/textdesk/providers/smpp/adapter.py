"""SMPP 3.4 over a persistent bind_transceiver session.

Unlike the HTTP providers this adapter holds a connection: ``session.py`` keeps it bound in a
background thread (smpp is a blocking, stateful protocol), and ``send()`` hands submit_sm to that
thread and awaits an ``asyncio`` future the thread resolves with ``call_soon_threadsafe``, so the
event loop never blocks. Receipts and inbound messages arrive on the same connection and are
pushed to ``context.sink`` on the event loop the adapter was started from.

Lifecycle: one adapter per channel for the life of the process. It starts (connects and binds)
when created inside a running event loop, else on ``start()`` or the first ``send()``; close it
with ``aclose()``, which unbinds.

``send()`` submits the parts of a long message one after the other and stops at the first
refusal (earlier parts have then already gone out: the error message says so). The concatenation
reference is derived from the idempotency key, so a retried message reuses it and a handset that
already holds some parts can discard the repeats. The message's ``provider_message_id`` is the
message_id of the **last** part's submit_sm_resp: the last part is accepted last, so its id
exists only once the whole message was accepted. Receipts for the other parts are mapped to that
id while the adapter remembers them (see ``receipts.py``): a failed part reports the message as
failed or undelivered, a delivered one adds nothing, and the last part's receipt says
"delivered".

SMPP has no idempotency key: submitting again is a second message, so
``dedupes_by_idempotency_key`` is False.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import logging
import uuid
import zlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import ClassVar

from textdesk.domain.states import MessageStatus
from textdesk.providers.base import (
    AmbiguousFailure,
    AuthFailure,
    ChannelContext,
    InboundSms,
    OutboundSms,
    PermanentFailure,
    ProviderError,
    ReportSink,
    SendResult,
    SignatureError,
    StatusReport,
    TemporaryFailure,
    Unavailable,
    WebhookRequest,
)
from textdesk.providers.smpp import codes, pdu, text
from textdesk.providers.smpp.config import SmppConfig
from textdesk.providers.smpp.doubt import Answer, provisional_id
from textdesk.providers.smpp.inbound import Reassembler, mo_key
from textdesk.providers.smpp.receipts import ReceiptTracker, parse_receipt
from textdesk.providers.smpp.session import Session, Submit, SubmitFailure, SubmitOutcome

log = logging.getLogger(__name__)

#: How long the session thread waits for the sink to take a receipt or an inbound message before
#: it acknowledges the deliver_sm anyway (the sink call goes on; the SMSC must not time out).
SINK_TIMEOUT = 5.0
#: TON/NPI of an alphanumeric sender ("ACME"): TON 5 alphanumeric, NPI 0 unknown.
ALPHANUMERIC_TON = 5
ALPHANUMERIC_NPI = 0

_FAILURE_MESSAGES = {
    SubmitFailure.NOT_BOUND: "not bound to the SMSC; the message was not sent",
    SubmitFailure.WINDOW_FULL: "too many submits awaiting an answer; the message was not sent",
    SubmitFailure.CONNECTION_LOST: "connection lost before the SMSC answered; outcome unknown",
    SubmitFailure.TIMEOUT: "the SMSC did not answer submit_sm in time; outcome unknown",
    SubmitFailure.CLOSED: "the SMPP session was closed",
}

_Outcome = tuple[SubmitOutcome, str]


class SmppProvider:
    name: ClassVar[str] = "smpp"
    dedupes_by_idempotency_key: ClassVar[bool] = False

    def __init__(self, config: SmppConfig, context: ChannelContext) -> None:
        self.config = config
        self.context = context
        self.tracker = ReceiptTracker(config.receipt_id_format)
        self._reassembler = Reassembler(config.reassembly_timeout)
        self._session = Session(config, self, name=f"smpp-channel-{context.channel_id}")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    # --- lifecycle ---------------------------------------------------------------------------

    def start_in(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start the session; receipts and inbound messages go to the sink on ``loop``."""
        if self._loop is None or self._loop.is_closed():
            self._loop = loop
        self._session.start()

    async def start(self) -> None:
        self.start_in(asyncio.get_running_loop())

    @property
    def bound(self) -> bool:
        return self._session.bound

    @property
    def binds(self) -> int:
        """Successful binds so far (more than one after a reconnect)."""
        return self._session.binds

    async def aclose(self) -> None:
        """Unbind and stop the session thread (without blocking the event loop)."""
        self._closed = True
        await asyncio.to_thread(self._session.stop)

    def close(self) -> None:
        """Blocking ``aclose()``, for code outside an event loop."""
        self._closed = True
        self._session.stop()

    # --- sending -----------------------------------------------------------------------------

    async def send(self, sms: OutboundSms) -> SendResult:
        if self._closed:
            raise TemporaryFailure("smpp:closed", _FAILURE_MESSAGES[SubmitFailure.CLOSED])
        await self.start()
        await self._wait_bound()
        try:
            parts = text.build_parts(sms.body, self._reference(sms.idempotency_key))
        except ValueError as exc:
            raise PermanentFailure("smpp:too_long", str(exc)) from None
        source, source_ton, source_npi = self._source(sms.sender or self.context.sender)
        validity = _validity(sms.valid_until)
        ids: list[str] = []
        for number, part in enumerate(parts, start=1):
            message = pdu.SubmitSm(
                source_addr=source,
                source_addr_ton=source_ton,
                source_addr_npi=source_npi,
                destination_addr=sms.to.strip().removeprefix("+"),
                dest_addr_ton=self.config.dest_ton,
                dest_addr_npi=self.config.dest_npi,
                esm_class=part.esm_class,
                data_coding=part.data_coding,
                short_message=part.short_message,
                validity_period=validity,
            )
            try:
                raw = pdu.submit_sm(0, message)
            except (ValueError, UnicodeError) as exc:  # e.g. a sender outside Latin-1
                raise PermanentFailure(
                    "smpp:bad_request", f"cannot encode submit_sm: {exc}"
                ) from None
            outcome, canonical_id, answer = await self._submit(raw)
            if outcome.failure is not None and outcome.failure.may_have_been_sent:
                raise self._in_doubt(outcome, answer, ids, number, len(parts))
            if outcome.failure is not None or outcome.status != codes.ESME_ROK:
                raise self._error(outcome, number, len(parts))
            if not canonical_id:
                # Accepted without an id: nothing will ever match its receipts, but it was sent.
                log.warning("smpp: submit_sm_resp without a message_id for %s", sms.message_id)
                canonical_id = f"smpp-noid-{uuid.uuid4().hex}"
            ids.append(canonical_id)
        if len(ids) > 1:
            self.tracker.note_group(ids)
        early = self.tracker.early_status(ids)
        return SendResult(
            provider_message_id=ids[-1],
            status=early.status if early is not None else MessageStatus.SENT,
            segments=len(parts),
        )

    async def _wait_bound(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.submit_timeout
        while not self._session.bound:
            error = self._session.last_error
            if isinstance(error, AuthFailure):
                raise AuthFailure(error.code, error.message)
            if loop.time() >= deadline:
                reason = f" ({error.message})" if error is not None else ""
                raise Unavailable(
                    "smpp:not_bound", _FAILURE_MESSAGES[SubmitFailure.NOT_BOUND] + reason
                )
            await asyncio.sleep(0.02)

    async def _submit(self, raw: bytes) -> tuple[SubmitOutcome, str, Answer]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_Outcome] = loop.create_future()
        tracker = self.tracker
        answer = Answer()

        def done(outcome: SubmitOutcome) -> None:
            # On the session thread: record the id before any later receipt is read.
            canonical = ""
            if outcome.failure is None and outcome.status == codes.ESME_ROK:
                canonical = tracker.note_submitted(outcome.message_id)
            if answer.arrive(outcome, canonical):
                _resolve_threadsafe(loop, future, (outcome, canonical))

        item: Submit = self._session.submit(raw, done)
        try:
            outcome, canonical = await asyncio.wait_for(future, self.config.submit_timeout)
        except TimeoutError:
            sent = item.cancel()
            failure = SubmitFailure.TIMEOUT if sent else SubmitFailure.WINDOW_FULL
            outcome, canonical = SubmitOutcome(failure=failure), ""
        finally:
            item.cancel()
        if outcome.failure is not None and outcome.failure.may_have_been_sent:
            # From now on an answer is late (it settles the doubt); one that came just now
            # is the answer after all.
            arrived = answer.stop_waiting()
            if arrived is not None:
                outcome, canonical = arrived
        return outcome, canonical, answer

    def _in_doubt(
        self, outcome: SubmitOutcome, answer: Answer, accepted: list[str], number: int, total: int
    ) -> AmbiguousFailure:
        """The SMSC may have taken part ``number``: the message gets a provisional id that the
        receipts of its accepted parts, and the part's late answer, will report under."""
        error = self._error(outcome, number, total)
        doubt = provisional_id()
        if accepted:
            self.tracker.note_doubt(doubt, accepted)
            # Receipts of the earlier parts may have come while this one was awaited.
            early = self.tracker.early_doubt(doubt, accepted)
            if early is not None:
                self._push_nowait(lambda sink: sink.status(self.context.channel_id, early))

        def late(late_outcome: SubmitOutcome, canonical: str) -> None:
            self._late_answer(doubt, late_outcome, canonical, number, total)

        answer.then(late)
        return AmbiguousFailure(error.code, error.message, provider_message_id=doubt)

    def _late_answer(
        self, doubt: str, outcome: SubmitOutcome, canonical: str, number: int, total: int
    ) -> None:
        """The answer to a submit left in doubt, come after all (session thread, or the event
        loop if it came just as ``send()`` gave up): report what it settles."""
        report: StatusReport | None = None
        if outcome.status == codes.ESME_ROK and canonical:
            self.tracker.note_late(doubt, canonical, number, last=number == total)
            early = self.tracker.early_status([canonical])  # its receipt may have come first
            if early is not None and number == total:
                report = dataclasses.replace(early, provider_message_id=doubt)
            elif number == total:
                # Every part was accepted, the last one late: the message went out.
                report = StatusReport(doubt, MessageStatus.SENT, raw={"late_answer": canonical})
        elif outcome.status != codes.ESME_ROK:
            error = codes.error_for_status(outcome.status)
            report = StatusReport(
                doubt,
                MessageStatus.FAILED,
                error.code,
                f"the SMSC refused part {number} of {total} after all: {error.message}",
            )
        if report is not None:
            final = report
            self._push_nowait(lambda sink: sink.status(self.context.channel_id, final))

    def _error(self, outcome: SubmitOutcome, number: int, total: int) -> ProviderError:
        suffix = f" (part {number} of {total}; earlier parts were accepted)" if number > 1 else ""
        if outcome.failure is not None:
            # The SMSC may have taken a submit it did not answer: the core must not re-send it
            # blindly (SMPP does not de-duplicate), hence AmbiguousFailure.
            cls: type[TemporaryFailure] = TemporaryFailure
            if outcome.failure.may_have_been_sent:
                cls = AmbiguousFailure
            elif outcome.failure is SubmitFailure.NOT_BOUND and number == 1:
                # Nothing of the message left: the channel is down, not the message at fault.
                cls = Unavailable
            return cls(f"smpp:{outcome.failure.value}", _FAILURE_MESSAGES[outcome.failure] + suffix)
        return codes.error_for_status(outcome.status, suffix=suffix)

    def _reference(self, idempotency_key: str) -> int:
        return zlib.crc32(idempotency_key.encode()) & 0xFF

    def _source(self, sender: str) -> tuple[str, int, int]:
        sender = sender.strip()
        digits = sender.removeprefix("+")
        if digits.isdigit():
            return digits, self.config.source_ton, self.config.source_npi
        return sender, ALPHANUMERIC_TON, ALPHANUMERIC_NPI

    # --- what the session thread calls -------------------------------------------------------

    def on_deliver_sm(self, message: pdu.DeliverSm) -> int:
        if message.is_receipt:
            receipt = parse_receipt(message)
            routed = self.tracker.route(receipt)
            if routed is None:
                log.warning("smpp: receipt without a message id: %r", message.payload[:200])
                return codes.ESME_ROK
            if routed.report is None:
                return codes.ESME_ROK
            report = routed.report
            return self._push(lambda sink: sink.status(self.context.channel_id, report))
        key = mo_key(message, self._session.epoch, datetime.now(UTC).date())
        sms = self._reassembler.add(message, key)
        if sms is None:
            return codes.ESME_ROK
        return self._push_inbound(sms)

    def on_tick(self) -> None:
        for sms in self._reassembler.expire():
            log.warning("smpp: delivering an incomplete concatenated message from %s", sms.sender)
            self._push_inbound(sms)

    def _push_inbound(self, sms: InboundSms) -> int:
        return self._push(lambda sink: sink.inbound(self.context.channel_id, sms))

    def _push_nowait(self, call: Callable[[ReportSink], Awaitable[None]]) -> None:
        """Hand a report to the sink without waiting for it (nothing to acknowledge)."""
        sink, loop = self.context.sink, self._loop
        if sink is None or loop is None or loop.is_closed():
            log.error("smpp: no report sink for channel %s; dropped", self.context.channel_id)
            return

        async def run() -> None:
            try:
                await call(sink)
            except Exception:
                log.exception("smpp: storing a report for a message in doubt failed")

        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            asyncio.run_coroutine_threadsafe(run(), loop)

    def _push(self, call: Callable[[ReportSink], Awaitable[None]]) -> int:
        """Run a sink call on the event loop and wait (a little) for it, so the deliver_sm is
        acknowledged after the core has taken it: a crash in between makes the SMSC resend."""
        sink, loop = self.context.sink, self._loop
        if sink is None or loop is None or loop.is_closed():
            log.error("smpp: no report sink for channel %s; dropped", self.context.channel_id)
            return codes.ESME_ROK

        async def run() -> None:
            await call(sink)

        try:
            future = asyncio.run_coroutine_threadsafe(run(), loop)
        except RuntimeError:  # the loop closed meanwhile
            log.error("smpp: event loop closed; report for %s dropped", self.context.channel_id)
            return codes.ESME_ROK
        try:
            future.result(SINK_TIMEOUT)
        except concurrent.futures.TimeoutError:
            log.warning("smpp: the sink is slow; acknowledging before it finished")
        except Exception:
            log.exception("smpp: the sink failed; asking the SMSC to deliver again later")
            return codes.ESME_RX_T_APPN
        return codes.ESME_ROK

    # --- webhooks: SMPP has none -------------------------------------------------------------

    def verify(self, request: WebhookRequest) -> None:
        raise SignatureError("SMPP has no webhooks")

    def parse_inbound(self, request: WebhookRequest) -> InboundSms | None:
        return None

    def parse_status(self, request: WebhookRequest) -> StatusReport | None:
        return None


def _resolve_threadsafe(
    loop: asyncio.AbstractEventLoop, future: asyncio.Future[_Outcome], value: _Outcome
) -> None:
    def resolve() -> None:
        if not future.done():
            future.set_result(value)

    # A closed loop raises RuntimeError: nobody waits any more.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(resolve)


def _validity(valid_until: datetime | None) -> str:
    """SMPP absolute time ``YYMMDDhhmmsstnnp`` in UTC (t tenths, nn quarter hours, p sign)."""
    if valid_until is None:
        return ""
    if valid_until.tzinfo is None:
        valid_until = valid_until.replace(tzinfo=UTC)
    valid_until = valid_until.astimezone(UTC)
    if valid_until <= datetime.now(UTC):
        return ""  # the core expires such messages; an SMSC would refuse a past validity
    return valid_until.strftime("%y%m%d%H%M%S") + "000+"
