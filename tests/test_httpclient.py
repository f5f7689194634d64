"""The HTTP clients. httpx's sharded pools: idle pools first, one TLS context, no repeated
failed imports. The provider client: the same request on the wire as httpx, the same answer
surface, httpx's exception classes, proxies, TLS, timeouts and its connection limit."""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import json
import socket
import ssl
import sys
from urllib.parse import parse_qs

import aiohttp
import httpx
import pytest

from tests.providers.fake_http import Answer, FakeApi, fake_api
from textdesk import httpclient
from textdesk.httpclient import ProviderClient, ProviderHttp, ShardedTransport


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


# --- the provider client ---------------------------------------------------------------------

FORM = {"To": "+14155550123", "Body": "Hi Dana & co: 50% off?", "StatusCallback": "https://x/s"}
DOCUMENT = {"from": "+14155550100", "text": "caf\u00e9 \u2713", "use_profile_webhooks": False}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _through(client: ProviderHttp, api: FakeApi) -> None:
    await client.post(
        f"{api.url}/2010-04-01/Accounts/AC1/Messages.json",
        data=FORM,
        auth=("AC1", "t0k\u00e9n"),
        headers={"Accept": "application/json"},
    )
    await client.post(
        f"{api.url}/v2/messages",
        json=DOCUMENT,
        headers={"Authorization": "Bearer KEY", "Idempotency-Key": "msg-42"},
    )
    await client.get(f"{api.url}/v2/messages/SM..%2F..%2Fx%3Fy?page=2", auth=("AC1", "t"))
    await client.request("GET", f"{api.url}/v1/messages/9", timeout=3.0)


@pytest.mark.anyio
async def test_the_provider_client_sends_what_httpx_sends() -> None:
    """Adapter tests check the exact request through httpx.MockTransport: the worker's client
    must put the same method, URL, body, auth and headers on the wire."""
    with fake_api() as api:
        async with httpx.AsyncClient() as reference:
            await _through(reference, api)
        async with ProviderClient(4, 10) as client:
            await _through(client, api)
    by_httpx, ours = api.seen[:4], api.seen[4:]
    assert len(ours) == 4
    for theirs, mine in zip(by_httpx, ours, strict=True):
        assert (mine.method, mine.path) == (theirs.method, theirs.path)
        for name in ("authorization", "content-type", "accept", "idempotency-key"):
            assert mine.headers.get(name) == theirs.headers.get(name), name
        assert mine.body == theirs.body
    assert parse_qs(ours[0].body.decode()) == {k: [v] for k, v in FORM.items()}
    assert ours[0].headers["content-type"] == "application/x-www-form-urlencoded"
    basic = base64.b64encode("AC1:t0k\u00e9n".encode()).decode()
    assert ours[0].headers["authorization"] == f"Basic {basic}"
    assert json.loads(ours[1].body) == DOCUMENT
    assert ours[1].headers["idempotency-key"] == "msg-42"
    assert ours[2].path == "/v2/messages/SM..%2F..%2Fx%3Fy?page=2"
    assert ours[3].body == b""


@pytest.mark.anyio
async def test_the_provider_client_answers_like_an_httpx_response() -> None:
    with fake_api() as api:
        api.answer(
            "GET",
            "/ok",
            Answer(
                201,
                '{"id": "\u00e9"}'.encode("latin-1"),
                {
                    "Content-Type": "application/json; charset=latin-1",
                    "Retry-After": "3",
                },
            ),
        )
        api.answer("GET", "/bad", Answer(503, b"<html>down</html>", {"Content-Type": "text/html"}))
        async with ProviderClient(4, 10) as client:
            ok = await client.get(f"{api.url}/ok")
            bad = await client.get(f"{api.url}/bad")
    assert (ok.status_code, ok.is_success, ok.reason_phrase) == (201, True, "Created")
    assert ok.headers.get("retry-after") == ok.headers.get("Retry-After") == "3"
    assert ok.text == '{"id": "\u00e9"}'
    assert (bad.status_code, bad.is_success, bad.text) == (503, False, "<html>down</html>")
    with pytest.raises(ValueError):
        bad.json()


@pytest.mark.anyio
async def test_the_provider_client_follows_no_redirect_and_keeps_no_cookie() -> None:
    with fake_api() as api:
        api.answer(
            "POST",
            "/moved",
            Answer(302, b"", {"Location": f"{api.url}/elsewhere", "Set-Cookie": "s=1; Path=/"}),
        )
        async with ProviderClient(4, 10) as client:
            moved = await client.post(f"{api.url}/moved", data={"a": "b"})
            await client.get(f"{api.url}/after")
    assert moved.status_code == 302
    assert [s.path for s in api.seen] == ["/moved", "/after"]
    assert "cookie" not in api.seen[1].headers


@pytest.mark.anyio
async def test_the_provider_client_holds_at_most_its_connections() -> None:
    with fake_api() as api:
        api.answer("GET", "/slow", Answer(200, b"{}", delay=0.2))
        async with ProviderClient(2, 10) as client:
            answers = await asyncio.gather(*(client.get(f"{api.url}/slow") for _ in range(6)))
    assert [a.status_code for a in answers] == [200] * 6
    assert api.most_active == 2
    assert api.connections == 2  # kept alive and reused


@pytest.mark.anyio
async def test_provider_client_failures_come_out_as_httpx_errors() -> None:
    """What adapters classify on: a failed connect never carried the request (retry); a
    timeout or a dropped connection after sending may have (ambiguous)."""
    with fake_api() as api:
        api.answer("POST", "/hang", Answer(200, b"{}", delay=2.0))
        api.answer("POST", "/drop", Answer(drop=True))
        async with ProviderClient(4, 0.5) as client:
            with pytest.raises(httpx.ConnectError):
                await client.post(f"http://127.0.0.1:{_closed_port()}/v1", json={})
            with pytest.raises(httpx.TimeoutException) as timeout:
                await client.post(f"{api.url}/hang", json={})
            with pytest.raises(httpx.TransportError) as dropped:
                await client.post(f"{api.url}/drop", json={})
    assert not isinstance(timeout.value, httpx.ConnectTimeout | httpx.PoolTimeout)
    assert not isinstance(dropped.value, httpx.ConnectError | httpx.TimeoutException)


def test_aiohttp_errors_map_to_one_httpx_class_each() -> None:
    key = aiohttp.client_reqrep.ConnectionKey("h", 443, True, True, None, None, None)
    refused = aiohttp.ClientConnectorError(key, OSError(111, "refused"))
    cases: list[tuple[BaseException, type[httpx.TransportError]]] = [
        (aiohttp.ConnectionTimeoutError("connect"), httpx.ConnectTimeout),
        (refused, httpx.ConnectError),
        (aiohttp.SocketTimeoutError("read"), httpx.ReadTimeout),
        (TimeoutError(), httpx.ReadTimeout),
        (aiohttp.ServerDisconnectedError(), httpx.RemoteProtocolError),
        (aiohttp.ClientPayloadError("cut"), httpx.RemoteProtocolError),
        (aiohttp.ClientOSError(104, "reset"), httpx.ReadError),
        (aiohttp.InvalidURL("nope"), httpx.UnsupportedProtocol),
    ]
    for error, expected in cases:
        assert type(httpclient._translate(error)) is expected, error


@pytest.mark.anyio
async def test_the_provider_client_goes_through_the_environment_proxy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with fake_api() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url.replace("http://", "http://u:p%40ss@"))
        monkeypatch.setenv("NO_PROXY", "direct.invalid,.internal.invalid")
        monkeypatch.delenv("http_proxy", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        async with ProviderClient(4, 5) as client:
            await client.get("http://api.example.invalid/v2/messages/1")
            with pytest.raises(httpx.ConnectError):  # not proxied: the name does not resolve
                await client.get("http://direct.invalid/x")
    assert [s.path for s in proxy.seen] == ["http://api.example.invalid/v2/messages/1"]
    credentials = base64.b64encode(b"u:p@ss").decode()
    assert proxy.seen[0].headers["proxy-authorization"] == f"Basic {credentials}"


def test_proxies_are_read_from_the_environment_once() -> None:
    proxies = httpclient._Proxies(
        {"http": "proxy:3128", "all": "http://all:8080", "no": "localhost,.internal"}
    )
    assert proxies.for_url("http://api.twilio.com/x") == "http://proxy:3128"
    assert proxies.for_url("https://api.twilio.com/x") == "http://all:8080"
    assert proxies.for_url("http://localhost:8000/x") is None
    assert proxies.for_url("https://sms.internal/x") is None
    assert not httpclient._Proxies({"https": "http://p:1", "no": "*"})
    assert not httpclient._Proxies({"https": "https://tls-proxy:443"})  # unsupported: direct
    assert not httpclient._Proxies({})


@pytest.mark.anyio
async def test_the_provider_client_verifies_tls_and_bounds_each_call() -> None:
    client = ProviderClient(8, 12.0)
    assert client._ssl.verify_mode == ssl.CERT_REQUIRED and client._ssl.check_hostname
    assert (client._default_timeout.total, client._default_timeout.sock_connect) == (12.0, 5.0)
    await client.aclose()  # never used: nothing to close
    with pytest.raises(RuntimeError):
        await client.get("http://127.0.0.1:9/")
