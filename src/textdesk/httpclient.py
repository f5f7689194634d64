"""The shared HTTP client for provider calls, built for many requests in flight.

httpcore's connection pool re-examines every pooled connection (a readability syscall each) on
every request it assigns, so one pool of N connections costs O(N) per request and O(N^2) per
round. Measured here with 256 calls in flight against the simulator (200 ms latency): one pool
of 256 connections managed 48 requests/s, 64 pools of 4 about 780/s. ``ShardedTransport``
gives each request a pool of one connection with nothing in flight (see the class);
adapters still see one ``httpx.AsyncClient``.

httpcore also asks ``import sniffio`` every time it sets up a lock or an event (several per
request). Without sniffio installed that import fails, and a failed import is not cached: each
one searches every ``sys.path`` entry again (measured: about a fifth of the client's CPU time at
800 requests/s). ``_cache_missing_sniffio`` records the absence once, so the same ``import``
fails at once; nothing changes when sniffio is installed.
"""

from __future__ import annotations

import importlib.util
import itertools
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx


def _cache_missing_sniffio() -> None:
    if "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is None:
        # A None entry makes ``import sniffio`` raise ImportError without a path search.
        sys.modules["sniffio"] = None  # type: ignore[assignment]


_cache_missing_sniffio()

CONNECTIONS_PER_SHARD = 1


class ShardedTransport(httpx.AsyncBaseTransport):
    """Many small pools behind one transport; a request goes to a pool with nothing in flight.

    Idle pools are a stack (the last one freed is the next one used, so its connection is the
    one most likely still open). Only when every pool is busy does a request queue behind
    another, round-robin: with one connection per pool (the default) and at most
    ``connections`` requests in flight, none ever waits for a connection held by another
    while one sits idle, and each request costs its pool a look at one connection only.
    """

    def __init__(self, connections: int, *, per_shard: int = CONNECTIONS_PER_SHARD) -> None:
        shards = max(1, -(-connections // per_shard))
        limits = httpx.Limits(max_connections=per_shard, max_keepalive_connections=per_shard)
        # One TLS context for every shard: building one loads the CA bundle (about 50 ms of
        # CPU here), which each shard paid again at every worker start.
        tls = httpx.create_ssl_context()
        self._shards = [httpx.AsyncHTTPTransport(verify=tls, limits=limits) for _ in range(shards)]
        self._in_flight = [0] * shards
        self._idle = list(range(shards - 1, -1, -1))  # shard 0 on top
        self._next = itertools.cycle(range(shards))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        shard = self._idle.pop() if self._idle else next(self._next)
        self._in_flight[shard] += 1
        try:
            response = await self._shards[shard].handle_async_request(request)
        except BaseException:
            self._release(shard)
            raise
        # The connection stays busy until the body is read and the response closed.
        return httpx.Response(
            status_code=response.status_code,
            headers=response.headers,
            stream=_Releasing(response.stream, self, shard),
            extensions=response.extensions,
        )

    def _release(self, shard: int) -> None:
        self._in_flight[shard] -= 1
        if self._in_flight[shard] == 0:
            self._idle.append(shard)

    async def aclose(self) -> None:
        for shard in self._shards:
            await shard.aclose()


class _Releasing(httpx.AsyncByteStream):
    """A response body that hands its shard back once closed (exactly once)."""

    def __init__(self, stream: Any, owner: ShardedTransport, shard: int) -> None:
        self._stream = stream
        self._owner: ShardedTransport | None = owner
        self._shard = shard

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            owner, self._owner = self._owner, None
            if owner is not None:
                owner._release(self._shard)


def provider_client(concurrency: int, timeout: float) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=ShardedTransport(concurrency),
        timeout=httpx.Timeout(timeout, connect=5.0),
    )
