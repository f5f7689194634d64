"""The bound SMPP connection, kept by one background thread per channel.

::

    connect ──▶ bind_transceiver ──ok──▶ serve: read PDUs, write queued submit_sm (window),
       ▲              │                         answer deliver_sm / enquire_link, send
       │              │refused / no answer      enquire_link when idle
       │              ▼                               │
       └──── backoff (exponential, jittered, capped) ◀┘ connection lost, unbind received,
                                                        enquire_link unanswered

One thread owns the socket, so reads and writes never interleave and there is no socket lock:
other threads (the event loop, via the adapter) only append to the outbound queue and wake the
thread through a socket pair. Submits are answered through their ``on_done`` callback, always on
this thread except when the session is not bound at the time of the call.

On connection loss every submit in flight fails with ``connection_lost`` (its outcome is unknown:
the SMSC may have accepted it) and every queued one with ``not_bound`` (it never left). A submit
that timed out is remembered while its connection lasts: an answer that comes after all is
handed to its callback again (``Submit.answer_late``), which settles the message left in doubt.
"""

from __future__ import annotations

import contextlib
import logging
import random
import select
import socket
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from textdesk.providers.base import ProviderError, TemporaryFailure
from textdesk.providers.smpp import codes, pdu
from textdesk.providers.smpp.config import SmppConfig

log = logging.getLogger(__name__)

#: Reconnect delays: BACKOFF_INITIAL * 2**attempt, capped, then scaled by a random factor in
#: [0.5, 1) so that many channels dropped by one SMSC restart do not all come back at once.
BACKOFF_INITIAL = 0.5
BACKOFF_MAX = 60.0
#: How long the SMSC has to answer bind_transceiver and unbind.
BIND_TIMEOUT = 10.0
UNBIND_TIMEOUT = 2.0
#: How often the thread wakes up when nothing happens (timers: keepalive, submit expiry, ticks).
TICK = 0.25
#: Timed-out submits whose answer we still take, per connection (the most recent ones).
EXPIRED_KEPT = 10_000


def backoff_delay(attempt: int, jitter: Callable[[], float] = random.random) -> float:
    """Seconds to wait before reconnect attempt ``attempt`` (0 for the first after a loss).
    ``jitter`` is not security-sensitive: it only spreads reconnects out."""
    ceiling = min(BACKOFF_MAX, BACKOFF_INITIAL * 2.0 ** min(attempt, 16))
    return ceiling * (0.5 + 0.5 * jitter())


class SubmitFailure(StrEnum):
    NOT_BOUND = "not_bound"  # never sent
    WINDOW_FULL = "window_full"  # never sent: no room in the window in time
    CONNECTION_LOST = "connection_lost"  # sent, no answer before the connection went away
    TIMEOUT = "timeout"  # sent, no answer in time
    CLOSED = "closed"  # the adapter was closed (never sent, or sent and unanswered)

    @property
    def may_have_been_sent(self) -> bool:
        return self in (SubmitFailure.CONNECTION_LOST, SubmitFailure.TIMEOUT)


@dataclass(frozen=True)
class SubmitOutcome:
    status: int = codes.ESME_ROK
    message_id: str = ""
    failure: SubmitFailure | None = None


class SessionHandler(Protocol):
    """What the session calls on its thread."""

    def on_deliver_sm(self, message: pdu.DeliverSm) -> int:
        """Handle a deliver_sm; return the command_status for its deliver_sm_resp."""
        ...

    def on_tick(self) -> None:
        """Called every few hundred milliseconds (e.g. to expire incomplete inbound sets)."""
        ...


class Submit:
    """One queued or in-flight submit_sm."""

    def __init__(self, raw: bytes, on_done: Callable[[SubmitOutcome], None]) -> None:
        self.raw = raw  # the encoded submit_sm; the session thread sets its sequence number
        self._on_done = on_done
        self._done = False
        self._lock = threading.Lock()
        self._cancelled = False
        self._sent = False
        self.sent_at = 0.0

    def cancel(self) -> bool:
        """The caller stopped waiting: don't send it if it is still queued. Returns whether it
        had already been written to the SMSC."""
        with self._lock:
            self._cancelled = True
            return self._sent

    def claim(self) -> bool:
        """For the session thread, right before writing: ``False`` if cancelled meanwhile."""
        with self._lock:
            if self._cancelled:
                return False
            self._sent = True
            self.sent_at = time.monotonic()
            return True

    def finish(self, outcome: SubmitOutcome) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
        self._call(outcome)

    def answer_late(self, outcome: SubmitOutcome) -> None:
        """The SMSC's answer to a submit already finished as ``TIMEOUT``: passed on all the
        same, so the submitter can settle the message it left in doubt."""
        self._call(outcome)

    def _call(self, outcome: SubmitOutcome) -> None:
        try:
            self._on_done(outcome)
        except Exception:
            log.exception("smpp: submit callback failed")


class _ConnectionLost(Exception):
    pass


class _BindRefused(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"bind refused with 0x{status:02X}")
        self.status = status


class _Frames:
    """Cuts a byte stream into PDUs (command_length first)."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        frames: list[bytes] = []
        while len(self._buffer) >= pdu.HEADER_SIZE:
            header = pdu.parse_header(bytes(self._buffer[: pdu.HEADER_SIZE]))
            if len(self._buffer) < header.length:
                break
            frames.append(bytes(self._buffer[: header.length]))
            del self._buffer[: header.length]
        return frames


class Session:
    def __init__(self, config: SmppConfig, handler: SessionHandler, *, name: str = "smpp") -> None:
        self._config = config
        self._handler = handler
        self._name = name
        self._lock = threading.Lock()
        self._queue: deque[Submit] = deque()
        self._inflight: OrderedDict[int, Submit] = OrderedDict()
        # Submits that timed out on this connection, by sequence: their answer may still come.
        self._expired: OrderedDict[int, Submit] = OrderedDict()
        self._bound = False
        self._last_error: ProviderError | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._sequence = 0
        self._binds = 0
        self._epoch = ""
        # Keepalive state, touched by the session thread only.
        self._last_rx = 0.0
        self._enquire_seq: int | None = None
        self._enquire_sent = 0.0
        self._enquire_timeout = min(max(config.enquire_link_interval, 2.0), 30.0)

    # --- called from other threads -----------------------------------------------------------

    @property
    def bound(self) -> bool:
        return self._bound

    @property
    def binds(self) -> int:
        """How many times the session bound successfully (reconnects included)."""
        return self._binds

    @property
    def epoch(self) -> str:
        """A token of the current connection (new at every bind): the SMSC numbers its PDUs per
        connection, so a sequence number means something only together with it."""
        return self._epoch

    @property
    def last_error(self) -> ProviderError | None:
        """Why the last connect or bind failed; ``None`` once bound."""
        return self._last_error

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self._thread is not None or self._stopping.is_set():
            return
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def submit(self, raw: bytes, on_done: Callable[[SubmitOutcome], None]) -> Submit:
        """Queue an encoded submit_sm (see ``pdu.submit_sm``)."""
        item = Submit(raw, on_done)
        with self._lock:
            accepted = self._bound and not self._stopping.is_set()
            if accepted:
                self._queue.append(item)
        if accepted:
            self._wake()
        else:
            item.finish(SubmitOutcome(failure=SubmitFailure.NOT_BOUND))
        return item

    def stop(self, timeout: float = 5.0) -> None:
        """Unbind, close and end the thread (blocking, at most about ``timeout`` seconds)."""
        self._stopping.set()
        self._wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        if not self.running:  # else the thread fails what is left when it ends
            self._fail_all(SubmitFailure.CLOSED)
            for sock in (self._wake_r, self._wake_w):
                sock.close()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\x00")

    # --- the thread --------------------------------------------------------------------------

    def _run(self) -> None:
        attempt = 0
        while not self._stopping.is_set():
            sock: socket.socket | None = None
            try:
                sock = self._connect()
                frames = _Frames()
                self._bind(sock, frames)
            except _BindRefused as exc:
                self._last_error = codes.bind_error(exc.status)
                log.warning("%s: %s", self._name, self._last_error)
            except (OSError, _ConnectionLost, pdu.PduError) as exc:
                self._last_error = TemporaryFailure("smpp:connect", f"cannot bind: {exc}")
                log.warning("%s: connect/bind failed: %s", self._name, exc)
            except Exception as exc:
                self._last_error = TemporaryFailure("smpp:connect", f"cannot bind: {exc}")
                log.exception("%s: connect/bind failed", self._name)
            else:
                attempt = 0
                try:
                    self._serve(sock, frames)
                except (OSError, _ConnectionLost, pdu.PduError) as exc:
                    log.warning("%s: connection lost: %s", self._name, exc)
                except Exception:
                    # A bug must cost a reconnect, not the channel's only thread.
                    log.exception("%s: session failed; reconnecting", self._name)
                finally:
                    self._unbound(
                        SubmitFailure.CLOSED
                        if self._stopping.is_set()
                        else SubmitFailure.CONNECTION_LOST
                    )
            finally:
                if sock is not None:
                    sock.close()
            if self._stopping.is_set():
                break
            delay = backoff_delay(attempt)
            attempt += 1
            log.info("%s: reconnecting in %.1f s", self._name, delay)
            self._stopping.wait(delay)
        self._fail_all(SubmitFailure.CLOSED)

    def _next_sequence(self) -> int:
        self._sequence = self._sequence % 0x7FFFFFFF + 1
        return self._sequence

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(
            (self._config.host, self._config.port), timeout=BIND_TIMEOUT
        )
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Writes of a stuck peer time out instead of blocking the thread forever.
        sock.settimeout(max(self._config.submit_timeout, 5.0))
        return sock

    def _read(self, sock: socket.socket, frames: _Frames, timeout: float) -> list[bytes]:
        readable, _, _ = select.select([sock, self._wake_r], [], [], max(timeout, 0.0))
        if self._wake_r in readable:
            with contextlib.suppress(BlockingIOError):
                while self._wake_r.recv(4096):
                    pass
        if sock not in readable:
            return []
        data = sock.recv(65536)
        if not data:
            raise _ConnectionLost("the SMSC closed the connection")
        self._last_rx = time.monotonic()
        return frames.feed(data)

    def _bind(self, sock: socket.socket, frames: _Frames) -> None:
        sequence = self._next_sequence()
        sock.sendall(
            pdu.bind_transceiver(
                sequence,
                system_id=self._config.system_id,
                password=self._config.password,
                system_type=self._config.system_type,
            )
        )
        deadline = time.monotonic() + BIND_TIMEOUT
        while time.monotonic() < deadline:
            if self._stopping.is_set():
                raise _ConnectionLost("stopping")
            for raw in self._read(sock, frames, deadline - time.monotonic()):
                header = pdu.parse_header(raw)
                if header.command_id in (codes.BIND_TRANSCEIVER_RESP, codes.GENERIC_NACK):
                    if header.status != codes.ESME_ROK:
                        raise _BindRefused(header.status)
                    with self._lock:
                        self._bound = True
                    self._binds += 1
                    self._epoch = uuid.uuid4().hex
                    self._last_error = None
                    log.info("%s: bound to %s:%s", self._name, self._config.host, self._config.port)
                    return
                if header.command_id == codes.ENQUIRE_LINK:
                    sock.sendall(pdu.response(codes.ENQUIRE_LINK_RESP, header.sequence))
        raise _ConnectionLost("no answer to bind_transceiver")

    def _serve(self, sock: socket.socket, frames: _Frames) -> None:
        self._last_rx = time.monotonic()
        self._enquire_seq = None
        last_tick = 0.0
        while True:
            if self._stopping.is_set():
                self._unbind(sock, frames)
                return
            self._flush(sock)
            for raw in self._read(sock, frames, TICK):
                if not self._handle(sock, raw):
                    return
            now = time.monotonic()
            self._keepalive(sock, now)
            self._expire_inflight(now)
            if now - last_tick >= TICK:
                last_tick = now
                try:
                    self._handler.on_tick()
                except Exception:
                    log.exception("%s: tick handler failed", self._name)

    def _flush(self, sock: socket.socket) -> None:
        """Write queued submits while the window has room."""
        while len(self._inflight) < self._config.window:
            with self._lock:
                if not self._queue:
                    return
                item = self._queue.popleft()
            if not item.claim():
                continue
            sequence = self._next_sequence()
            self._inflight[sequence] = item
            sock.sendall(pdu.with_sequence(item.raw, sequence))

    def _handle(self, sock: socket.socket, raw: bytes) -> bool:
        """Act on one PDU; ``False`` when the session must end (the SMSC unbound us)."""
        header = pdu.parse_header(raw)
        command = header.command_id
        if command in (codes.SUBMIT_SM_RESP, codes.GENERIC_NACK):
            item = self._inflight.pop(header.sequence, None)
            late = None if item is not None else self._expired.pop(header.sequence, None)
            if item is None and late is None:
                if command == codes.GENERIC_NACK:
                    log.warning("%s: generic_nack 0x%02X", self._name, header.status)
                return True
            message_id = pdu.message_id(raw) if command == codes.SUBMIT_SM_RESP else ""
            outcome = SubmitOutcome(status=header.status, message_id=message_id)
            if item is not None:
                item.finish(outcome)
            elif late is not None:
                log.info("%s: late answer to submit_sm %d", self._name, header.sequence)
                late.answer_late(outcome)
        elif command == codes.DELIVER_SM:
            status = self._deliver(raw)
            sock.sendall(pdu.response(codes.DELIVER_SM_RESP, header.sequence, status))
        elif command == codes.ENQUIRE_LINK:
            sock.sendall(pdu.response(codes.ENQUIRE_LINK_RESP, header.sequence))
        elif command == codes.ENQUIRE_LINK_RESP:
            if header.sequence == self._enquire_seq:
                self._enquire_seq = None
        elif command == codes.UNBIND:
            log.info("%s: the SMSC unbound us", self._name)
            sock.sendall(pdu.response(codes.UNBIND_RESP, header.sequence))
            return False
        elif not header.is_response and command != codes.ALERT_NOTIFICATION:
            # data_sm, query_sm, outbind...: not something this ESME supports.
            sock.sendall(pdu.response(codes.GENERIC_NACK, header.sequence, codes.ESME_RINVCMDID))
        return True

    def _deliver(self, raw: bytes) -> int:
        try:
            message = pdu.deliver_sm(raw)
        except pdu.PduError:
            log.exception("%s: unreadable deliver_sm %s", self._name, raw.hex())
            return codes.ESME_RX_P_APPN
        try:
            return self._handler.on_deliver_sm(message)
        except Exception:
            log.exception("%s: deliver_sm handler failed", self._name)
            return codes.ESME_RX_T_APPN

    def _keepalive(self, sock: socket.socket, now: float) -> None:
        if self._enquire_seq is not None:
            if now - self._enquire_sent > self._enquire_timeout:
                raise _ConnectionLost("enquire_link unanswered")
            return
        if now - max(self._last_rx, self._enquire_sent) >= self._config.enquire_link_interval:
            self._enquire_seq = self._next_sequence()
            self._enquire_sent = now
            sock.sendall(pdu.request(codes.ENQUIRE_LINK, self._enquire_seq))

    def _expire_inflight(self, now: float) -> None:
        # Sent in order, so the oldest is first.
        while self._inflight:
            sequence, item = next(iter(self._inflight.items()))
            if now - item.sent_at < self._config.submit_timeout:
                break
            del self._inflight[sequence]
            item.finish(SubmitOutcome(failure=SubmitFailure.TIMEOUT))
            self._expired[sequence] = item
            while len(self._expired) > EXPIRED_KEPT:
                self._expired.popitem(last=False)

    def _unbind(self, sock: socket.socket, frames: _Frames) -> None:
        sequence = self._next_sequence()
        with contextlib.suppress(OSError):
            sock.sendall(pdu.request(codes.UNBIND, sequence))
            deadline = time.monotonic() + UNBIND_TIMEOUT
            while time.monotonic() < deadline:
                for raw in self._read(sock, frames, deadline - time.monotonic()):
                    header = pdu.parse_header(raw)
                    if header.command_id == codes.UNBIND_RESP:
                        log.info("%s: unbound", self._name)
                        return
                    self._handle(sock, raw)

    def _unbound(self, failure: SubmitFailure) -> None:
        with self._lock:
            self._bound = False
        self._expired.clear()  # answers come on the connection the submit went out on
        self._fail_all(failure)

    def _fail_all(self, in_flight: SubmitFailure) -> None:
        with self._lock:
            queued = list(self._queue)
            self._queue.clear()
        inflight = list(self._inflight.values())
        self._inflight.clear()
        for item in inflight:
            item.finish(SubmitOutcome(failure=in_flight))
        for item in queued:
            item.finish(
                SubmitOutcome(
                    failure=SubmitFailure.CLOSED
                    if in_flight is SubmitFailure.CLOSED
                    else SubmitFailure.NOT_BOUND
                )
            )
