"""The dispatcher: claims due messages and keeps many provider calls in flight.

One asyncio loop per worker process. Database work runs in threads (``asyncio.to_thread``);
provider calls are async (one shared ``ProviderClient``, see ``textdesk.httpclient``).
Outcomes are written in batches, so a thousand sends a second cost tens of transactions, not
thousands.

Stopping (SIGTERM, or the server shutting down) stops claiming, waits for the calls in
flight, writes their outcomes and returns. A message claimed but not finished when the process
is killed outright is left to the lease reaper (``outbox.reap``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from textdesk.delivery import outbox, reconcile, wakeup
from textdesk.delivery.circuit import Circuits
from textdesk.delivery.outbox import (
    CHANNEL_PAUSED,
    Claimed,
    Deferred,
    Failed,
    Outcome,
    Retry,
    Sent,
    Unknown,
)
from textdesk.httpclient import ProviderHttp, provider_client
from textdesk.providers import registry
from textdesk.providers.base import (
    AmbiguousFailure,
    AuthFailure,
    ChannelContext,
    InboundSms,
    OptedOut,
    OutboundSms,
    Provider,
    ProviderError,
    StatusReport,
    TemporaryFailure,
    Unavailable,
)
from textdesk.services import channels as channel_service
from textdesk.services import messaging, p2p
from textdesk.services.errors import Invalid
from textdesk.settings import Settings
from textdesk.store.db import Database
from textdesk.store.tables import channels, utcnow

log = logging.getLogger(__name__)
#: How often a worker returns timed-out P2P assignments to their campaign's pool.
ASSIGNMENT_REAP_SECONDS = 30.0

HOUSEKEEPING_SECONDS = 5.0
FLUSH_SECONDS = 0.02
FLUSH_SIZE = 200
#: Messages claimed ahead of a free call slot, as a share of ``delivery_concurrency``: a claim
#: is a transaction of several round trips, and a slot that frees while it runs would stay
#: empty until it ends. Measured in one run (one worker, 256 calls of 200 ms): PostgreSQL 944/s
#: without, 1,129/s with; SQLite 1,056/s and 1,210/s. At most ``delivery_concurrency`` calls are
#: in flight all the same (``_calls``); the ones claimed ahead wait for a slot, and stopping
#: sends them with the rest.
CLAIM_AHEAD_SHARE = 0.25


def webhook_url(base_url: str, provider: str, channel_id: int, kind: str) -> str:
    return f"{base_url}/webhooks/{provider}/{channel_id}/{kind}"


@dataclass
class _Channel:
    provider: Provider
    name: str
    sender: str
    loaded_at: float
    fingerprint: str


#: Providers that hold a connection open and receive over it (inbound, receipts): their
#: adapters are started for every active channel, not only when something is sent.
PERSISTENT = frozenset({"smpp"})


class _Sink:
    """Receives what persistent-connection providers (SMPP) push, and stores it."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self._db = db
        self._settings = settings

    async def inbound(self, channel_id: int, sms: InboundSms) -> None:
        try:
            await asyncio.to_thread(
                messaging.receive_inbound, self._db, self._settings, channel_id, sms
            )
        except Invalid as exc:
            # Acknowledged and dropped: an SMSC told "error" delivers the same message again,
            # and no resend makes an alphanumeric sender answerable.
            log.warning("ignored inbound message on channel %s: %s", channel_id, exc)

    async def status(self, channel_id: int, report: StatusReport) -> None:
        await asyncio.to_thread(
            messaging.apply_status, self._db, channel_id, report, actor="provider:smpp"
        )


class Dispatcher:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        *,
        http: ProviderHttp | None = None,
        worker_id: str | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.db = db
        #: The time every database comparison uses (claims, pauses, backoffs, leases); tests
        #: move it to live through a long outage in seconds.
        self.clock = clock
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._own_http = http is None
        self._http = http or provider_client(
            settings.delivery_concurrency, settings.provider_timeout_seconds
        )
        self._channels: dict[int, _Channel] = {}
        self._sink = _Sink(db, settings)
        self._inflight: set[asyncio.Task[None]] = set()  # claimed, sending or waiting to
        concurrency = max(1, settings.delivery_concurrency)
        self._calls = asyncio.Semaphore(concurrency)  # provider calls in flight
        self._ahead = min(settings.delivery_batch_size, int(concurrency * CLAIM_AHEAD_SHARE))
        self._outcomes: list[Outcome] = []
        self._circuits = Circuits(settings.circuit_breaker_failures)
        wait = settings.sent_reconcile_after_seconds
        self._receipt_wait = timedelta(seconds=wait) if wait > 0 else None
        self._wake = asyncio.Event()
        self.sent = 0
        self._reconciling: asyncio.Task[None] | None = None
        self._next_reconcile = 0.0
        self._next_assignment_reap = 0.0

    @property
    def actor(self) -> str:
        return f"worker:{self.worker_id}"

    # --- providers -------------------------------------------------------------------------

    async def _channel(self, channel_id: int) -> _Channel:
        cached = self._channels.get(channel_id)
        if cached is not None and time.monotonic() - cached.loaded_at < 60:
            return cached
        row = await asyncio.to_thread(self._load_channel, channel_id)
        fingerprint = json.dumps(
            [row.provider, row.phone_e164, row.config], sort_keys=True, default=str
        )
        if cached is not None and cached.fingerprint == fingerprint:
            # Unchanged: keep the adapter (an SMPP bind is not torn down every minute).
            cached.loaded_at = time.monotonic()
            return cached
        context = ChannelContext(
            channel_id=channel_id,
            sender=row.phone_e164,
            base_url=self.settings.base_url,
            sink=self._sink,
        )
        provider = registry.create(row.provider, row.config or {}, context, self._http)
        if cached is not None:
            await _close(cached.provider)
        entry = _Channel(provider, row.provider, row.phone_e164, time.monotonic(), fingerprint)
        self._channels[channel_id] = entry
        return entry

    def _persistent_channels(self) -> list[int]:
        with self.db.read() as conn:
            return list(
                conn.execute(
                    sa.select(channels.c.id).where(
                        channels.c.is_active, channels.c.provider.in_(sorted(PERSISTENT))
                    )
                ).scalars()
            )

    def _load_channel(self, channel_id: int) -> Any:
        with self.db.read() as conn:
            return conn.execute(sa.select(channels).where(channels.c.id == channel_id)).one()

    def resend_safe_providers(self) -> list[str]:
        return [name for name in registry.PROVIDERS if registry.dedupes_by_idempotency_key(name)]

    # --- sending ---------------------------------------------------------------------------

    async def _send(self, claimed: Claimed) -> None:
        async with self._calls:
            # The probe is how a paused channel is tried again; anything else claimed before
            # the pause waits for the channel instead of failing on it.
            reason = None
            if not claimed.probe:
                reason = self._circuits.open_reason(claimed.channel_id)
            if reason is not None:
                outcome: Outcome = Deferred(claimed, CHANNEL_PAUSED, _waiting(reason))
            else:
                outcome = await self._call(claimed)
        self._outcomes.append(outcome)
        if len(self._outcomes) >= FLUSH_SIZE:
            await self._flush()

    async def _call(self, claimed: Claimed) -> Outcome:
        outcome: Outcome
        try:
            channel = await self._channel(claimed.channel_id)
            sms = OutboundSms(
                message_id=claimed.id,
                sender=channel.sender,
                to=claimed.to,
                body=claimed.body,
                idempotency_key=claimed.idempotency_key,
                status_callback_url=webhook_url(
                    self.settings.base_url, channel.name, claimed.channel_id, "status"
                ),
                valid_until=claimed.valid_until,
            )
            result = await asyncio.wait_for(
                channel.provider.send(sms), self.settings.provider_timeout_seconds + 5
            )
            outcome = Sent(claimed, result.provider_message_id, result.status, result.segments)
            self._circuits.success(claimed.channel_id)
            await self._answered(claimed)
        except (TimeoutError, AmbiguousFailure) as exc:
            code = exc.code if isinstance(exc, ProviderError) else "timeout"
            later = exc.provider_message_id if isinstance(exc, AmbiguousFailure) else None
            outcome = self._ambiguous(claimed, code, str(exc) or "no answer in time", later)
            await self._unhealthy(claimed, code)
        except (Unavailable, AuthFailure) as exc:
            # Not the message's fault, and no retry of it would help: the channel pauses and
            # the message waits for it, its attempt given back.
            down = _channel_down(exc)
            await self._open(claimed, down)
            outcome = self._deferred(claimed, exc.code, down)
        except TemporaryFailure as exc:
            open_reason = self._circuits.open_reason(claimed.channel_id)
            if claimed.probe:
                # The channel's probe failed too: it stays paused, and the message (which
                # may not be at fault) tries again later without losing an attempt.
                still = f"still failing after the pause (last: {exc.code})"
                await self._open(claimed, still)
                outcome = self._deferred(claimed, exc.code, still)
            elif open_reason is not None:
                # The circuit opened while this call was out: the channel failed, not it.
                outcome = self._deferred(claimed, exc.code, open_reason)
            else:
                outcome = self._classify(claimed, exc)
                await self._unhealthy(claimed, exc.code)
        except ProviderError as exc:  # the provider answered: throttled, refused, opted out
            outcome = self._classify(claimed, exc)
            await self._answered(claimed)
        except Exception as exc:  # an adapter bug must not lose the message: park it as unknown
            log.exception("provider adapter failed on message %s", claimed.id)
            outcome = Unknown(claimed, "adapter_error", f"{type(exc).__name__}: {exc}")
        return outcome

    def _ambiguous(
        self, claimed: Claimed, code: str, detail: str, provider_message_id: str | None = None
    ) -> Outcome:
        channel = self._channels.get(claimed.channel_id)
        if channel is not None and type(channel.provider).dedupes_by_idempotency_key:
            return self._retry_or_fail(claimed, code, detail, None, ambiguous=True)
        return Unknown(claimed, code, detail, provider_message_id)

    def _classify(self, claimed: Claimed, exc: ProviderError) -> Outcome:
        if exc.retryable:
            return self._retry_or_fail(claimed, exc.code, exc.message, exc.retry_after)
        return Failed(claimed, exc.code, exc.message, opted_out=isinstance(exc, OptedOut))

    def _retry_or_fail(
        self,
        claimed: Claimed,
        code: str,
        detail: str,
        retry_after: float | None,
        *,
        ambiguous: bool = False,
    ) -> Outcome:
        """``ambiguous``: this attempt may have reached the provider. Giving up on a message
        that this or an earlier attempt may have delivered makes it unknown, not failed."""
        if claimed.attempts >= self.settings.delivery_max_attempts:
            detail = f"gave up after {claimed.attempts} attempts: {detail}"
            if ambiguous or claimed.maybe_sent:
                return Unknown(claimed, code, detail)
            return Failed(claimed, code, detail)
        delay = outbox.backoff(claimed.attempts, retry_after=retry_after)
        retry_at = self.clock() + timedelta(seconds=delay)
        return Retry(claimed, code, detail, retry_at, ambiguous=ambiguous)

    def _deferred(self, claimed: Claimed, code: str, reason: str) -> Deferred:
        send_after = None
        if claimed.probe:
            # Not the next probe: a message the provider keeps failing must not hold the
            # channel paused forever (any other message may be the one that gets through).
            pause = self.settings.circuit_breaker_pause_seconds
            send_after = self.clock() + timedelta(seconds=2 * pause)
        return Deferred(claimed, code, _waiting(reason), send_after)

    # --- the circuit breaker (delivery/circuit.py) -----------------------------------------

    async def _unhealthy(self, claimed: Claimed, code: str) -> None:
        if claimed.probe:
            await self._open(claimed, f"still failing after the pause (last: {code})")
            return
        count = self._circuits.failure(claimed.channel_id)
        if count is not None:
            await self._open(
                claimed, f"paused after {count} consecutive provider failures (last: {code})"
            )

    async def _open(self, claimed: Claimed, reason: str) -> None:
        """Pause the channel, unless this process knows it paused already (a burst of calls
        failing together writes once); a failed probe always pauses it again."""
        channel_id = claimed.channel_id
        now = self.clock()
        if not claimed.probe and self._circuits.open_reason(channel_id) is not None:
            return
        until = now + timedelta(seconds=self.settings.circuit_breaker_pause_seconds)
        self._circuits.opened(channel_id, until, reason)
        log.warning("channel %s paused until %s: %s", channel_id, until.isoformat(), reason)
        await asyncio.to_thread(
            channel_service.pause_channel, self.db, channel_id, until=until, reason=reason
        )

    async def _answered(self, claimed: Claimed) -> None:
        """The provider answered: if this was a probe, the channel works again."""
        if claimed.probe:
            self._circuits.closed(claimed.channel_id)
            log.info("channel %s answers again; resumed", claimed.channel_id)
            await asyncio.to_thread(channel_service.resume_channel, self.db, claimed.channel_id)

    async def _flush(self) -> None:
        batch, self._outcomes = self._outcomes, []
        if not batch:
            return
        try:
            await asyncio.to_thread(
                outbox.record,
                self.db,
                batch,
                actor=self.actor,
                now=self.clock(),
                receipt_wait=self._receipt_wait,
            )
        except BaseException:
            self._outcomes = batch + self._outcomes  # nothing is lost: retried next flush
            raise
        self.sent += sum(1 for o in batch if isinstance(o, Sent))

    # --- the loop --------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        wakeup.subscribe(loop, self._wake)
        listener = None
        if self.db.dialect == "postgresql":
            listener = wakeup.PgListener(self._dsn())
            listener.start()
        flusher = asyncio.create_task(self._flush_loop(stop))
        next_housekeeping = 0.0
        log.info("delivery worker %s started", self.worker_id)
        try:
            while not stop.is_set():
                self._maybe_reconcile()
                if time.monotonic() >= next_housekeeping:
                    await self._housekeeping()
                    next_housekeeping = time.monotonic() + HOUSEKEEPING_SECONDS
                # Up to ``delivery_concurrency`` calls, and a few claimed messages waiting
                # for a slot (``CLAIM_AHEAD_SHARE``); stopping sends those too.
                room = self.settings.delivery_concurrency + self._ahead - len(self._inflight)
                wait = self.settings.delivery_poll_seconds
                if room > 0:
                    self._wake.clear()
                    since = self._circuits.version()
                    result = await asyncio.to_thread(
                        outbox.claim,
                        self.db,
                        self.settings,
                        worker_id=self.worker_id,
                        limit=min(room, self.settings.delivery_batch_size),
                        now=self.clock(),
                    )
                    self._circuits.note_paused(result.paused, since)
                    for claimed in result.claimed:
                        task = asyncio.create_task(self._send(claimed))
                        self._inflight.add(task)
                        task.add_done_callback(self._inflight.discard)
                    if result.claimed:
                        continue  # there may be more: claim again at once
                    if result.next_in is not None:
                        wait = min(wait, max(0.005, result.next_in))
                else:
                    # Full: wait for a call to finish (or a wake-up) before claiming more.
                    wait = 0.01
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wait_any(stop), timeout=wait)
        finally:
            if self._inflight:
                await asyncio.gather(*self._inflight, return_exceptions=True)
            await self._flush()
            flusher.cancel()
            if self._reconciling is not None:  # lookups only read; the rest waits a pass
                self._reconciling.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._reconciling
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
            wakeup.unsubscribe(self._wake)
            if listener is not None:
                listener.stop()
            for channel in self._channels.values():
                await _close(channel.provider)
            if self._own_http:
                await self._http.aclose()
            log.info("delivery worker %s stopped", self.worker_id)

    async def _wait_any(self, stop: asyncio.Event) -> None:
        waiters = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()

    async def _flush_loop(self, stop: asyncio.Event) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            try:
                await self._flush()
            except Exception:  # keep the batch's outcomes for the next try
                log.exception("writing send outcomes failed; will retry")

    async def _housekeeping(self) -> None:
        try:
            for channel_id in await asyncio.to_thread(self._persistent_channels):
                await self._channel(channel_id)
            requeued, lost = await asyncio.to_thread(
                outbox.reap,
                self.db,
                resend_providers=self.resend_safe_providers(),
                actor=self.actor,
                now=self.clock(),
            )
            if requeued or lost:
                log.warning("lease expired: %d re-queued, %d marked unknown", requeued, lost)
            await asyncio.to_thread(
                outbox.promote_and_expire, self.db, actor=self.actor, now=self.clock()
            )
            if time.monotonic() >= self._next_assignment_reap:
                # P2P campaigns: contacts an agent was handed but did not send go back to the
                # pool once their assignment times out (request_batch also does it lazily).
                self._next_assignment_reap = time.monotonic() + ASSIGNMENT_REAP_SECONDS
                returned = await asyncio.to_thread(p2p.reap_expired, self.db)
                if returned:
                    log.info("%d timed-out campaign assignments returned to the pool", returned)
        except Exception:
            log.exception("outbox housekeeping failed")

    def _maybe_reconcile(self) -> None:
        """Every ``TEXTDESK_RECONCILE_SECONDS``, in the background (lookups take provider
        round trips, sending must not wait on them): ask about ``unknown`` messages."""
        every = self.settings.reconcile_seconds
        if every <= 0 or time.monotonic() < self._next_reconcile:
            return
        if self._reconciling is not None and not self._reconciling.done():
            return
        self._next_reconcile = time.monotonic() + every
        self._reconciling = asyncio.create_task(self._reconcile())

    async def _reconcile(self) -> None:
        async def adapter(channel_id: int) -> Provider:
            return (await self._channel(channel_id)).provider

        try:
            result = await reconcile.reconcile_unknown(
                self.db,
                adapter,
                timeout=self.settings.provider_timeout_seconds + 5,
                actor=self.actor,
                now=self.clock(),
            )
            if result.asked:
                log.info(
                    "reconciled unknown messages: %d asked, %d resolved, %d not found, %d failed",
                    result.asked,
                    result.resolved,
                    result.not_found,
                    result.failed,
                )
            if self._receipt_wait is not None:
                stuck = await reconcile.reconcile_stuck_sent(
                    self.db,
                    adapter,
                    after=self._receipt_wait,
                    timeout=self.settings.provider_timeout_seconds + 5,
                    actor=self.actor,
                    now=self.clock(),
                )
                if stuck.asked or stuck.marked_unknown:
                    log.info(
                        "sent messages without a delivery report: %d asked, %d resolved, "
                        "%d marked unknown",
                        stuck.asked,
                        stuck.resolved,
                        stuck.marked_unknown,
                    )
        except Exception:
            log.exception("reconciling unknown messages failed")

    def _dsn(self) -> str:
        url = self.db.engine.url.set(drivername="postgresql")
        return url.render_as_string(hide_password=False)


def _channel_down(exc: ProviderError) -> str:
    if isinstance(exc, AuthFailure):
        return (
            f"the provider refused the channel's credentials ({exc.code}: {exc.message}); "
            "messages wait until they work again"
        )
    return f"cannot send: {exc.message} ({exc.code})"


def _waiting(reason: str) -> str:
    return f"waiting for the channel: {reason}"


async def _close(provider: Provider) -> None:
    closer = getattr(provider, "aclose", None)
    if closer is not None:
        with contextlib.suppress(Exception):
            await closer()
