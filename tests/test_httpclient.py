"""The provider HTTP client: idle pools first, one TLS context, no repeated failed imports."""

from __future__ import annotations

import importlib.util
import sys

import httpx
import pytest

from textdesk import httpclient
from textdesk.httpclient import ShardedTransport


class _Recording(httpx.AsyncBaseTransport):
    def __init__(self, name: int, log: list[int]) -> None:
        self.name = name
        self.log = log

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.log.append(self.name)
        return httpx.Response(200, stream=httpx.ByteStream(b"ok"))


def _transport(shards: int) -> tuple[ShardedTransport, list[int]]:
    transport = ShardedTransport(shards)
    log: list[int] = []
    transport._shards = [_Recording(i, log) for i in range(shards)]  # type: ignore[misc]
    return transport, log


@pytest.mark.anyio
async def test_a_request_goes_to_a_pool_with_nothing_in_flight() -> None:
    transport, log = _transport(3)
    request = httpx.Request("POST", "http://127.0.0.1:9/v1/messages")
    first = await transport.handle_async_request(request)
    second = await transport.handle_async_request(request)
    assert log == [0, 1], "the first pool is busy until its response is closed"
    await first.aclose()
    await first.aclose()  # closing twice hands the pool back once
    third = await transport.handle_async_request(request)
    assert log == [0, 1, 0], "the pool freed last is used next (its connection is warm)"
    await second.aclose()
    await third.aclose()
    assert sorted(transport._idle) == [0, 1, 2]


@pytest.mark.anyio
async def test_when_every_pool_is_busy_requests_share_them() -> None:
    transport, log = _transport(2)
    request = httpx.Request("GET", "http://127.0.0.1:9/")
    responses = [await transport.handle_async_request(request) for _ in range(4)]
    assert sorted(log) == [0, 0, 1, 1]
    for response in responses:
        await response.aclose()
    assert sorted(transport._idle) == [0, 1]


@pytest.mark.anyio
async def test_a_failed_request_frees_its_pool() -> None:
    transport = ShardedTransport(1)

    class _Down(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            raise httpx.ConnectError("refused")

    transport._shards = [_Down()]  # type: ignore[list-item]
    with pytest.raises(httpx.ConnectError):
        await transport.handle_async_request(httpx.Request("GET", "http://127.0.0.1:9/"))
    assert transport._idle == [0]


@pytest.mark.anyio
async def test_the_client_reads_the_body_and_frees_the_pool() -> None:
    transport, log = _transport(2)
    async with httpx.AsyncClient(transport=transport) as client:
        for _ in range(3):
            assert (await client.get("http://127.0.0.1:9/")).text == "ok"
    assert log == [0, 0, 0]


def test_every_pool_shares_one_tls_context() -> None:
    transport = ShardedTransport(8)
    contexts = {id(shard._pool._ssl_context) for shard in transport._shards}
    assert len(contexts) == 1


def test_a_missing_sniffio_is_looked_for_once() -> None:
    httpclient._cache_missing_sniffio()
    if importlib.util.find_spec("sniffio") is not None and sys.modules.get("sniffio") is not None:
        pytest.skip("sniffio is installed: httpcore finds it normally")
    assert "sniffio" in sys.modules and sys.modules["sniffio"] is None
    with pytest.raises(ImportError):
        import sniffio  # noqa: F401
