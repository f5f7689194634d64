"""The fake carrier's memory and behaviour, independent of HTTP (``carrier.py`` wraps it).

Everything lives in memory: one compact record per accepted message, indexed by id and by
idempotency key, so a benchmark can push 100k+ messages through it cheaply. Delivery reports and
customer replies are background tasks that POST signed JSON to the URLs the sender gave; they
are retried a few times on connection errors and 5xx, then dropped (and counted).

Nothing here relies on an ASGI lifespan (a mounted sub-app never gets one): the callback
``httpx.AsyncClient`` is created on first use in the running event loop, and whoever owns the
carrier calls :meth:`CarrierState.aclose` on shutdown.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import random
import re
import sys
import time
import uuid
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import httpx

from textdesk.domain.encoding import MAX_BODY_CHARS, analyze
from textdesk.httpclient import ShardedTransport
from textdesk.providers.simulator import script, signing
from textdesk.providers.simulator.config import SimulatorConfig
from textdesk.providers.simulator.script import Code

log = logging.getLogger(__name__)

_E164: Final = re.compile(r"^\+[1-9]\d{7,14}$")
_USER_AGENT: Final = "textdesk-simulator/1"
#: Delivery reports and replies posted at once; a burst queues behind this.
CALLBACK_CONCURRENCY: Final = 64

ACCEPTED: Final = "accepted"
DELIVERED: Final = "delivered"
UNDELIVERED: Final = "undelivered"
FAILED: Final = "failed"


@dataclass(slots=True)
class Record:
    """One accepted message. Slotted and flat: a benchmark keeps 100k+ of these."""

    id: str
    sender: str
    to: str
    body: str
    segments: int
    idempotency_key: str | None
    status: str = ACCEPTED
    error_code: str | None = None
    sends: int = 1  # POSTs that carried this message's key (1 + suppressed duplicates)

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "from": self.sender,
            "to": self.to,
            "body": self.body,
            "segments": self.segments,
            "idempotency_key": self.idempotency_key,
            "error_code": self.error_code,
        }


@dataclass(frozen=True)
class Answer:
    """What the HTTP layer should respond."""

    status_code: int
    body: dict[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)


def error(status_code: int, code: Code, message: str, **headers: str) -> Answer:
    return Answer(status_code, {"code": code.value, "message": message}, headers)


@dataclass
class Stats:
    accepted: int = 0
    duplicates_suppressed: int = 0
    delivered: int = 0
    undelivered: int = 0
    failed: int = 0
    replies_sent: int = 0
    inbound_injected: int = 0
    rejected: int = 0  # sends answered 4xx/5xx
    callbacks_failed: int = 0  # callbacks dropped after their retries
    max_sends_per_key: int = 0
    #: Accepted with the sender, recipient and body of an earlier acceptance, under another
    #: idempotency key or none: the recipient gets the text twice, which the key counters
    #: cannot see. (A person may legitimately be sent the same words twice; a test that sends
    #: each text once expects 0.)
    repeats_accepted: int = 0


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _optional_str(payload: Mapping[str, Any], name: str) -> str | None:
    value = payload.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _Invalid(error(400, Code.MALFORMED, f"'{name}' must be a string"))
    return value


def _url(payload: Mapping[str, Any], name: str) -> str | None:
    value = _optional_str(payload, name)
    if value is not None and not value.startswith(("http://", "https://")):
        raise _Invalid(error(400, Code.MALFORMED, f"'{name}' must be an http(s) URL"))
    return value


def _required_str(payload: Mapping[str, Any], name: str) -> str:
    value = payload.get(name)
    if not isinstance(value, str) or (name != "body" and not value.strip()):
        raise _Invalid(error(400, Code.MISSING_FIELD, f"missing required field '{name}'"))
    return value


class _Invalid(Exception):
    def __init__(self, answer: Answer) -> None:
        super().__init__(answer.body["message"])
        self.answer = answer


class CarrierState:
    def __init__(self, config: SimulatorConfig, *, http: httpx.AsyncClient | None = None) -> None:
        self.config = config
        self._rng = random.Random(config.seed)  # noqa: S311 - simulated outcomes, not secrets
        self._injected_http = http
        self._own_http: httpx.AsyncClient | None = None
        self._own_http_loop: asyncio.AbstractEventLoop | None = None
        self._slots: asyncio.Semaphore | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.messages: dict[str, Record] = {}
        self.by_key: dict[str, Record] = {}
        self._scripted_done: set[str] = set()
        # Hashes, not the texts: a benchmark's 100k+ acceptances stay cheap to remember.
        self._contents: set[int] = set()
        self.counters = Stats()

    # --- control -------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget every message and counter, and cancel pending callbacks."""
        for task in self._tasks:
            task.cancel()
        self._tasks.clear()
        self.messages.clear()
        self.by_key.clear()
        self._scripted_done.clear()
        self._contents.clear()
        self.counters = Stats()

    def stats(self) -> dict[str, int]:
        c = self.counters
        return {
            "accepted": c.accepted,
            "duplicates_suppressed": c.duplicates_suppressed,
            "delivered": c.delivered,
            "undelivered": c.undelivered,
            "failed": c.failed,
            "replies_sent": c.replies_sent,
            "inbound_injected": c.inbound_injected,
            "rejected": c.rejected,
            "callbacks_failed": c.callbacks_failed,
            "distinct_keys": len(self.by_key),
            "max_sends_per_key": c.max_sends_per_key,
            "repeats_accepted": c.repeats_accepted,
            "pending_callbacks": sum(1 for t in self._tasks if not t.done()),
        }

    def authorize(self, authorization: str | None, *, control: bool = False) -> bool:
        """Message routes need a bearer key (the configured one, if any); control routes need
        one only when a key is configured, so demos can ``curl`` them."""
        scheme, _, key = (authorization or "").partition(" ")
        presented = key.strip() if scheme.lower() == "bearer" else ""
        if self.config.api_key:
            return hmac.compare_digest(presented.encode(), self.config.api_key.encode())
        return control or bool(presented)

    async def wait_idle(self, timeout: float | None = None) -> None:
        """Wait until every scheduled delivery report and reply has been sent (or dropped)."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            while pending := [t for t in self._tasks if not t.done() and t.get_loop() is loop]:
                await asyncio.wait(pending)

    async def aclose(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(t for t in tasks if t.get_loop() is loop), return_exceptions=True)
        self._tasks.clear()
        if self._own_http is not None and self._own_http_loop is loop:
            await self._own_http.aclose()
        self._own_http = None
        self._own_http_loop = None
        self._slots = None

    # --- sending -------------------------------------------------------------------------------

    async def submit(self, payload: Any) -> Answer:
        try:
            sender, to, body, key, status_callback, inbound_url = self._parse_send(payload)
        except _Invalid as exc:
            self.counters.rejected += 1
            return exc.answer
        await self._sleep_ms(self._jitter(self.config.latency_ms, self.config.latency_jitter_ms))

        # Nothing awaits between the key lookup and the insert below, so concurrent requests
        # with one key cannot both be accepted.
        if key is not None and (seen := self.by_key.get(key)) is not None:
            seen.sends += 1
            self.counters.duplicates_suppressed += 1
            self.counters.max_sends_per_key = max(self.counters.max_sends_per_key, seen.sends)
            return self._accepted(seen, duplicate=True)

        failure = self._send_failure(to)
        if failure is not None:
            self.counters.rejected += 1
            return failure

        record = Record(
            id=f"SM{uuid.uuid4().hex}",
            sender=sys.intern(sender),  # a few sender numbers, repeated on every record
            to=to,
            body=body,
            segments=analyze(body).segment_count,
            idempotency_key=key,
        )
        self.messages[record.id] = record
        if key is not None:
            self.by_key[key] = record
        self.counters.accepted += 1
        self.counters.max_sends_per_key = max(self.counters.max_sends_per_key, 1)
        content = hash((sender, to, body))
        if content in self._contents:
            self.counters.repeats_accepted += 1
        else:
            self._contents.add(content)
        self._spawn(self._deliver(record, status_callback, inbound_url))

        if script.suffix(to) == script.HANG_SUFFIX:
            # Accepted, but the answer is late: the client times out not knowing that the
            # message went out. The core must reconcile (lookup, DLR, idempotent re-send).
            await self._sleep_ms(self.config.hang_ms)
        return self._accepted(record)

    def lookup(self, message_id: str) -> Record | None:
        return self.messages.get(message_id)

    def _parse_send(self, payload: Any) -> tuple[str, str, str, str | None, str | None, str | None]:
        if not isinstance(payload, dict):
            raise _Invalid(error(400, Code.MALFORMED, "the request body must be a JSON object"))
        sender = _required_str(payload, "from")
        to = _required_str(payload, "to")
        body = _required_str(payload, "body")
        if not body.strip():
            raise _Invalid(error(400, Code.EMPTY_BODY, "the message body is empty"))
        if len(body) > MAX_BODY_CHARS:
            raise _Invalid(
                error(
                    400,
                    Code.BODY_TOO_LONG,
                    f"the body has {len(body)} characters; at most {MAX_BODY_CHARS} are allowed",
                )
            )
        key = _optional_str(payload, "idempotency_key")
        status_callback = _url(payload, "status_callback")
        inbound_url = _url(payload, "inbound_url")
        if not _E164.match(to):
            raise _Invalid(error(400, Code.INVALID_NUMBER, f"'{to}' is not an E.164 number"))
        return sender, to, body, key, status_callback, inbound_url

    def _send_failure(self, to: str) -> Answer | None:
        scripted = script.SEND_FAILURES.get(script.suffix(to))
        if scripted is not None:
            status_code, code, message = scripted
            headers = {"Retry-After": "1"} if status_code == 429 else {}
            return error(status_code, code, message, **headers)
        cfg = self.config
        if cfg.temporary_failure_rate or cfg.permanent_failure_rate:
            roll = self._rng.random()
            if roll < cfg.temporary_failure_rate:
                return error(503, Code.UNAVAILABLE, "service temporarily unavailable")
            if roll < cfg.temporary_failure_rate + cfg.permanent_failure_rate:
                return error(400, Code.REJECTED, "the carrier rejected this message")
        return None

    @staticmethod
    def _accepted(record: Record, *, duplicate: bool = False) -> Answer:
        body: dict[str, Any] = {"id": record.id, "status": record.status}
        body["segments"] = record.segments
        if duplicate:
            body["duplicate"] = True
        return Answer(200, body)

    # --- delivery reports and replies ----------------------------------------------------------

    def _outcome(self, to: str) -> tuple[str, str | None, str | None]:
        scripted = script.DLR_OUTCOMES.get(script.suffix(to))
        if scripted is not None:
            status, code, message = scripted
            return status, code.value, message
        cfg = self.config
        if cfg.delivered_rate >= 1.0:
            return DELIVERED, None, None
        roll = self._rng.random()
        if roll < cfg.delivered_rate:
            return DELIVERED, None, None
        if roll < cfg.delivered_rate + cfg.undelivered_rate:
            undelivered_code, message = self._rng.choice(script.UNDELIVERED_ERRORS)
            return UNDELIVERED, undelivered_code.value, message
        failed_code, message = script.FAILED_ERROR
        return FAILED, failed_code.value, message

    def _reply_for(self, to: str) -> str | None:
        scripted = script.SCRIPTED_REPLIES.get(script.suffix(to))
        if scripted is not None:
            # A scripted customer answers once: a person who texted HELP does not text HELP
            # again to every answer, and two auto-responders would otherwise loop forever.
            if to in self._scripted_done:
                return None
            self._scripted_done.add(to)
            return scripted
        if self.config.reply_rate and self._rng.random() < self.config.reply_rate:
            return self._rng.choice(script.RANDOM_REPLIES)
        return None

    async def _deliver(
        self, record: Record, status_callback: str | None, inbound_url: str | None
    ) -> None:
        # Decide now rather than after the delay so that a seeded run draws its random numbers
        # in submission order.
        status, code, message = self._outcome(record.to)
        reply = self._reply_for(record.to) if status == DELIVERED else None
        await self._sleep_ms(self._jitter(self.config.dlr_delay_ms, self.config.dlr_delay_ms / 4))
        record.status = status
        record.error_code = code
        setattr(self.counters, status, getattr(self.counters, status) + 1)
        if status_callback is not None:
            report = {
                "id": record.id,
                "status": status,
                "error_code": code,
                "error_message": message,
                "timestamp": _now_iso(),
            }
            await self.post_callback(status_callback, report)
        if reply is not None and inbound_url is not None:
            await self._sleep_ms(
                self._jitter(self.config.reply_delay_ms, self.config.reply_delay_ms / 4)
            )
            self.counters.replies_sent += 1
            await self.send_inbound(
                sender=record.to, to=record.sender, body=reply, inbound_url=inbound_url
            )

    async def send_inbound(
        self, *, sender: str, to: str, body: str, inbound_url: str, message_id: str | None = None
    ) -> bool:
        """A customer texts ``to`` (one of our numbers). True if the receiver took it."""
        message = {
            "id": message_id or f"SMIN{uuid.uuid4().hex}",
            "from": sender,
            "to": to,
            "body": body,
            "timestamp": _now_iso(),
        }
        return await self.post_callback(inbound_url, message)

    async def inject_inbound(self, payload: Any) -> Answer:
        """``POST /v1/inject-inbound``: make a customer text first."""
        try:
            if not isinstance(payload, dict):
                raise _Invalid(error(400, Code.MALFORMED, "the request body must be a JSON object"))
            sender = _required_str(payload, "from")
            to = _required_str(payload, "to")
            body = _required_str(payload, "body")
            inbound_url = _url(payload, "inbound_url")
            if inbound_url is None:
                raise _Invalid(
                    error(400, Code.MISSING_FIELD, "missing required field 'inbound_url'")
                )
        except _Invalid as exc:
            return exc.answer
        self.counters.inbound_injected += 1
        message_id = f"SMIN{uuid.uuid4().hex}"
        coro = self.send_inbound(
            sender=sender, to=to, body=body, inbound_url=inbound_url, message_id=message_id
        )
        if payload.get("wait"):
            delivered = await coro
            return Answer(200, {"id": message_id, "delivered": delivered})
        self._spawn(coro)
        return Answer(202, {"id": message_id, "status": "queued"})

    async def post_callback(self, url: str, payload: Mapping[str, Any]) -> bool:
        """POST signed JSON; retry connection errors, 429 and 5xx with backoff, then drop."""
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        cfg = self.config
        reason = ""
        for attempt in range(cfg.callback_retries + 1):
            if attempt:
                await self._sleep_ms(cfg.callback_backoff_ms * 2 ** (attempt - 1))
            # Signed afresh on each attempt so a late retry is not refused as stale.
            headers = signing.headers(cfg.webhook_secret, int(time.time()), body)
            headers["Content-Type"] = "application/json"
            headers["User-Agent"] = _USER_AGENT
            try:
                async with self._callback_slots():
                    response = await self._client().post(
                        url, content=body, headers=headers, timeout=cfg.callback_timeout_s
                    )
            except httpx.HTTPError as exc:
                reason = f"{type(exc).__name__}: {exc}"
                continue
            if response.status_code < 300:
                return True
            reason = f"HTTP {response.status_code}"
            if response.status_code < 500 and response.status_code != 429:
                break  # the receiver refused it on purpose (bad signature, unknown channel)
        self.counters.callbacks_failed += 1
        log.warning("simulator: dropped callback %s to %s (%s)", payload.get("id"), url, reason)
        return False

    # --- plumbing ------------------------------------------------------------------------------

    def _client(self) -> httpx.AsyncClient:
        if self._injected_http is not None:
            return self._injected_http
        loop = asyncio.get_running_loop()
        # A client is bound to the loop it first ran in; a new loop (a fresh TestClient, say)
        # gets a new client rather than a broken one.
        if self._own_http is None or self._own_http_loop is not loop:
            # Small sharded pools: one big httpx pool costs O(connections) per request, and a
            # burst of thousands of delivery reports would melt it (see textdesk.httpclient).
            self._own_http = httpx.AsyncClient(
                transport=ShardedTransport(CALLBACK_CONCURRENCY),
                timeout=self.config.callback_timeout_s,
                follow_redirects=False,
            )
            self._own_http_loop = loop
            self._slots = asyncio.Semaphore(CALLBACK_CONCURRENCY)
        return self._own_http

    def _callback_slots(self) -> asyncio.Semaphore:
        """Callbacks in flight at once; the rest wait here, not inside the HTTP pool."""
        self._client()
        if self._slots is None:  # an injected client: still bound the concurrency
            self._slots = asyncio.Semaphore(CALLBACK_CONCURRENCY)
        return self._slots

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("simulator: callback task failed", exc_info=exc)

    def _jitter(self, mean_ms: float, jitter_ms: float) -> float:
        if jitter_ms <= 0:
            return mean_ms
        return max(0.0, self._rng.uniform(mean_ms - jitter_ms, mean_ms + jitter_ms))

    @staticmethod
    async def _sleep_ms(ms: float) -> None:
        if ms > 0:
            await asyncio.sleep(ms / 1000)
