"""A vendor API stand-in on a loopback port: canned answers by path, every request recorded.

Real sockets and a real HTTP server (``http.server``), so an adapter is exercised through its
actual HTTP client (the worker's ``ProviderClient`` or an httpx client), URL building, auth
headers, request body and status handling, without leaving the host. An answer can also come
late (``delay``) or never: ``drop`` closes the connection once the request has been read.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from textdesk.httpclient import ProviderClient, ProviderHttp


@dataclass(frozen=True)
class Answer:
    status: int = 200
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})
    delay: float = 0.0  # seconds before answering
    drop: bool = False  # close the connection instead of answering

    @classmethod
    def json(cls, status: int, document: Any) -> Answer:
        return cls(status, json.dumps(document).encode())


@dataclass(frozen=True)
class Seen:
    method: str
    path: str  # with the query string, as sent
    headers: Mapping[str, str]  # lower-case names
    body: bytes = b""


@dataclass
class FakeApi:
    url: str
    routes: dict[str, Answer] = field(default_factory=dict)  # "GET /path" -> answer
    seen: list[Seen] = field(default_factory=list)
    active: int = 0  # requests being answered right now
    most_active: int = 0  # the most answered at once
    connections: int = 0  # TCP connections accepted

    def answer(self, method: str, path: str, answer: Answer) -> None:
        self.routes[f"{method} {path}"] = answer


@contextmanager
def fake_api() -> Iterator[FakeApi]:
    api = FakeApi(url="")
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as real APIs

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            with lock:
                api.seen.append(
                    Seen(
                        self.command,
                        self.path,
                        {k.lower(): v for k, v in self.headers.items()},
                        body,
                    )
                )
                canned = api.routes.get(f"{self.command} {self.path}")
                api.active += 1
                api.most_active = max(api.most_active, api.active)
            try:
                self._answer(canned)
            finally:
                with lock:
                    api.active -= 1

        def _answer(self, canned: Answer | None) -> None:
            if canned is None:
                canned = Answer.json(404, {"message": f"no route {self.command} {self.path}"})
            if canned.delay:
                time.sleep(canned.delay)
            if canned.drop:
                self.close_connection = True
                return
            self.send_response(canned.status)
            for name, value in canned.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(canned.body)))
            self.end_headers()
            self.wfile.write(canned.body)

        do_GET = _handle
        do_POST = _handle

        def setup(self) -> None:
            super().setup()
            with lock:
                api.connections += 1

        def log_message(self, format: str, *args: Any) -> None:
            return  # quiet

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    api.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def closed_port() -> int:
    """A loopback port nothing listens on (connecting is refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wire_answer(
    status: int,
    body: bytes,
    headers: Mapping[str, str],
    error: Callable[[httpx.Request], Exception] | None,
) -> Answer | None:
    """A table case's canned answer (for ``httpx.MockTransport``) as this server gives it, so
    the same case runs through a real client: an httpx ``ConnectError`` becomes a refused
    connection (None: point the adapter at ``closed_port()``), a timeout an answer later than
    the client waits, any other transport error a connection closed without an answer."""
    if error is None:
        return Answer(status, body, dict(headers))
    raised = error(httpx.Request("POST", "http://127.0.0.1/"))
    if isinstance(raised, httpx.ConnectError):
        return None
    if isinstance(raised, httpx.TimeoutException):
        return Answer(200, b"{}", delay=WIRE_TIMEOUT * 3)
    return Answer(drop=True)


#: The whole-call timeout to give a client that runs ``wire_answer`` cases.
WIRE_TIMEOUT = 0.5


@dataclass(frozen=True)
class WireSend:
    """What ``send_over_the_wire`` saw: the adapter's answer (or error) and the request as it
    reached the server (None: the connection was refused, nothing arrived)."""

    outcome: Any
    request: Seen | None


def send_over_the_wire(
    path: str,
    canned: Answer | None,
    send: Callable[[ProviderHttp, str], Awaitable[Any]],
) -> WireSend:
    """Run one send-table case through the worker's own client and a real socket: ``canned``
    (from ``wire_answer``; None: refused) answers ``POST path``; ``send(http, api_base)``
    builds the adapter on that base and sends, returning the result or the ProviderError."""
    with fake_api() as api:
        base = api.url if canned is not None else f"http://127.0.0.1:{closed_port()}"
        if canned is not None:
            api.answer("POST", path, canned)

        async def run() -> Any:
            async with ProviderClient(4, WIRE_TIMEOUT) as http:
                return await send(http, base)

        outcome = asyncio.run(run())
    if canned is None:
        assert api.seen == []  # refused: nothing reached the server
        return WireSend(outcome, None)
    assert len(api.seen) == 1
    return WireSend(outcome, api.seen[0])
