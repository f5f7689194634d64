"""A vendor API stand-in on a loopback port: canned answers by path, every request recorded.

Real sockets and a real HTTP server (``http.server``), so an adapter is exercised through its
actual httpx client, URL building, auth headers and status handling, without leaving the host.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Answer:
    status: int = 200
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})

    @classmethod
    def json(cls, status: int, document: Any) -> Answer:
        return cls(status, json.dumps(document).encode())


@dataclass(frozen=True)
class Seen:
    method: str
    path: str  # with the query string, as sent
    headers: Mapping[str, str]  # lower-case names


@dataclass
class FakeApi:
    url: str
    routes: dict[str, Answer] = field(default_factory=dict)  # "GET /path" -> answer
    seen: list[Seen] = field(default_factory=list)

    def answer(self, method: str, path: str, answer: Answer) -> None:
        self.routes[f"{method} {path}"] = answer


@contextmanager
def fake_api() -> Iterator[FakeApi]:
    api = FakeApi(url="")
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            with lock:
                api.seen.append(
                    Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()})
                )
                canned = api.routes.get(f"{self.command} {self.path}")
            if canned is None:
                canned = Answer.json(404, {"message": f"no route {self.command} {self.path}"})
            self.send_response(canned.status)
            for name, value in canned.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(canned.body)))
            self.end_headers()
            self.wfile.write(canned.body)

        do_GET = _handle
        do_POST = _handle

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
