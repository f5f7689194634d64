"""HTTP clients: the provider client every adapter sends through, and httpx's sharded pools.

**The provider client** (``ProviderClient``, built by ``provider_client``) is what a worker's
adapters call: ``await http.post(url, data=... or json=..., auth=(user, password),
headers={...})``, ``await http.get(...)``, ``await http.request(method, url, ...)``. It answers a
``Response`` whose body is already read (``status_code``, ``headers``, ``content``, ``text``,
``json()``, ``is_success``, ``reason_phrase``): the part of ``httpx.Response`` adapters use. It
runs over aiohttp (its C HTTP parser, one connection pool of ``concurrency`` connections) and
skips what httpx.AsyncClient does on every request that provider calls never need: the cookie
jar, redirects (never followed, as httpx's default), the auth flow, event hooks, URL and header
models built in Python. Measured with 256 calls in flight against the simulator: 658-724 µs of
CPU per request through httpx with the sharded pools below, about a third of that through this
client (``bench/dispatch.py`` measures both in the same run).

Errors come out as httpx's exception classes, mapped in one place (``_translate``): adapters
classify ``httpx.ConnectError`` / ``ConnectTimeout`` (never sent: retry) and read timeouts or
dropped connections (may have reached the provider: ambiguous) the same way whichever client
they were given. ``ProviderHttp`` is the duck type adapters take, so an ``httpx.AsyncClient``
(with ``httpx.MockTransport`` in tests) still fits.

What it keeps from httpx's defaults: TLS verified against certifi's CA bundle (or
``SSL_CERT_FILE`` / ``SSL_CERT_DIR``: the same ``httpx.create_ssl_context()``); proxies from
``HTTP_PROXY`` / ``HTTPS_PROXY`` / ``ALL_PROXY`` with ``NO_PROXY`` exceptions, read once when the
client is built (``http://`` proxy URLs only: aiohttp does not speak TLS to a proxy); a
connect timeout of 5 s and the whole call bounded by the provider timeout.

**httpx's pools** (``ShardedTransport``; the simulator's delivery reports go through it):
httpcore's connection pool re-examines every pooled connection (a readability syscall each) on
every request it assigns, so one pool of N connections costs O(N) per request and O(N^2) per
round. Measured here with 256 calls in flight against the simulator (200 ms latency): one pool
of 256 connections managed 48 requests/s, 64 pools of 4 about 780/s. ``ShardedTransport``
gives each request a pool of one connection with nothing in flight (see the class).

httpcore also asks ``import sniffio`` every time it sets up a lock or an event (several per
request). Without sniffio installed that import fails, and a failed import is not cached: each
one searches every ``sys.path`` entry again (measured: about a fifth of the client's CPU time at
800 requests/s). ``_cache_missing_sniffio`` records the absence once, so the same ``import``
fails at once; nothing changes when sniffio is installed.
"""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import itertools
import json as jsonlib
import logging
import ssl
import sys
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol
from urllib import request as urlrequest
from urllib.parse import urlencode, urlsplit

import aiohttp
import httpx


def _cache_missing_sniffio() -> None:
    if "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is None:
        # A None entry makes ``import sniffio`` raise ImportError without a path search.
        sys.modules["sniffio"] = None  # type: ignore[assignment]


_cache_missing_sniffio()

log = logging.getLogger(__name__)

#: NO_PROXY as urllib reads it (untyped in typeshed).
_bypass: Any = getattr(urlrequest, "proxy_bypass_environment")  # noqa: B009

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


# --- the provider client ---------------------------------------------------------------------

CONNECT_TIMEOUT = 5.0
#: An idle connection is not reused after this many seconds: under the 5 s after which uvicorn
#: (the simulator) and many servers close idle connections, so a request is not written to a
#: connection the server is closing (a POST lost that way is ambiguous). httpx keeps them 5 s.
KEEPALIVE_SECONDS = 4.0


class ProviderResponse(Protocol):
    """What adapters read from an answer (``httpx.Response`` has it too)."""

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...  # case-insensitive names

    @property
    def content(self) -> bytes: ...

    @property
    def text(self) -> str: ...

    @property
    def reason_phrase(self) -> str: ...

    @property
    def is_success(self) -> bool: ...

    def json(self) -> Any: ...


class ProviderHttp(Protocol):
    """The client adapters are given: ``ProviderClient`` in a worker, any ``httpx.AsyncClient``
    elsewhere (the web app's, a test's with ``httpx.MockTransport``). Transport failures are
    raised as ``httpx.TransportError`` subclasses either way. (``auth`` has no None: httpx's
    methods take none; leave it out instead.)"""

    async def request(
        self,
        method: str,
        url: str,
        *,
        data: Mapping[str, str] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        auth: tuple[str, str] = ...,
        timeout: float | None = None,
    ) -> ProviderResponse: ...

    async def get(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        auth: tuple[str, str] = ...,
    ) -> ProviderResponse: ...

    async def post(
        self,
        url: str,
        *,
        data: Mapping[str, str] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        auth: tuple[str, str] = ...,
    ) -> ProviderResponse: ...

    async def aclose(self) -> None: ...


class Response:
    """An answer with its body read; the connection is back in the pool."""

    __slots__ = ("content", "headers", "reason_phrase", "status_code")

    def __init__(
        self,
        status_code: int,
        headers: Mapping[str, str],
        content: bytes,
        reason_phrase: str = "",
    ) -> None:
        self.status_code = status_code
        self.headers = headers
        self.content = content
        self.reason_phrase = reason_phrase

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def encoding(self) -> str:
        content_type = self.headers.get("Content-Type", "")
        for param in content_type.split(";")[1:]:
            name, _, value = param.partition("=")
            if name.strip().lower() == "charset" and value.strip():
                return value.strip().strip('"')
        return "utf-8"

    @property
    def text(self) -> str:
        try:
            return self.content.decode(self.encoding, errors="replace")
        except LookupError:  # an unknown charset
            return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return jsonlib.loads(self.content)

    def __repr__(self) -> str:
        return f"<Response [{self.status_code} {self.reason_phrase}]>"


def _json_body(document: Any) -> bytes:
    # As httpx 0.28 encodes ``json=``.
    return jsonlib.dumps(
        document, ensure_ascii=False, separators=(",", ":"), allow_nan=False
    ).encode()


def _default(headers: dict[str, str], name: str, value: str, *, replace: bool = False) -> None:
    """Set a header unless the caller gave it (in any case); ``replace``: set it anyway."""
    lower = name.lower()
    given = [key for key in headers if key.lower() == lower]
    if given and not replace:
        return
    for key in given:
        del headers[key]
    headers[name] = value


def _basic_auth(auth: tuple[str, str]) -> str:
    user, password = auth
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


class _Proxies:
    """``HTTP_PROXY`` / ``HTTPS_PROXY`` / ``ALL_PROXY`` and ``NO_PROXY``, read once (as httpx
    reads them when a client is built); the answer for each host is remembered."""

    def __init__(self, environment: Mapping[str, str]) -> None:
        self._environment = dict(environment)
        self._by_scheme: dict[str, str] = {}
        for scheme in ("http", "https"):
            proxy = environment.get(scheme) or environment.get("all")
            if not proxy:
                continue
            if "://" not in proxy:
                proxy = f"http://{proxy}"
            if not proxy.startswith("http://"):
                log.warning(
                    "ignoring %s proxy %s: only http:// proxies are supported", scheme, proxy
                )
                continue
            self._by_scheme[scheme] = proxy
        if environment.get("no", "").strip() == "*":
            self._by_scheme.clear()
        self._decided: dict[tuple[str, str], str | None] = {}

    def __bool__(self) -> bool:
        return bool(self._by_scheme)

    def for_url(self, url: str) -> str | None:
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc)
        try:
            return self._decided[key]
        except KeyError:
            pass
        proxy = self._by_scheme.get(parts.scheme)
        if proxy is not None and _bypass(parts.netloc, self._environment):
            proxy = None
        self._decided[key] = proxy
        return proxy


def _translate(exc: BaseException) -> httpx.TransportError:
    """aiohttp's failures as httpx's: whether the request may have reached the server is what
    adapters decide on. Only a failure to connect means it cannot have."""
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(detail)
    if isinstance(exc, aiohttp.ClientConnectorError):  # refused, DNS, TLS handshake, proxy
        return httpx.ConnectError(detail)
    if isinstance(exc, TimeoutError):  # a read timeout, or the whole call's: maybe sent
        return httpx.ReadTimeout(detail)
    if isinstance(exc, aiohttp.InvalidURL):
        return httpx.UnsupportedProtocol(detail)
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return httpx.RemoteProtocolError(detail)
    if isinstance(exc, aiohttp.ClientResponseError):  # an unreadable answer
        return httpx.RemoteProtocolError(detail)
    if isinstance(exc, aiohttp.ClientOSError):
        return httpx.ReadError(detail)
    return httpx.NetworkError(detail)


class ProviderClient:
    """The lean provider client (see the module docstring). One pool of ``connections``
    connections; the aiohttp session is opened on first use, in the running event loop."""

    def __init__(
        self,
        connections: int,
        timeout: float,
        *,
        connect_timeout: float = CONNECT_TIMEOUT,
        trust_env: bool = True,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._connections = max(1, connections)
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}
        self._default_timeout = self._client_timeout(timeout)
        self._ssl = ssl_context or httpx.create_ssl_context(trust_env=trust_env)
        self._proxies = _Proxies(urlrequest.getproxies() if trust_env else {})
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    def _client_timeout(self, total: float) -> aiohttp.ClientTimeout:
        cached = self._timeouts.get(total)
        if cached is None:
            cached = aiohttp.ClientTimeout(
                total=total, sock_connect=min(total, self._connect_timeout)
            )
            self._timeouts[total] = cached
        return cached

    def _open(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("the provider client is closed")
        connector = aiohttp.TCPConnector(
            limit=self._connections,
            limit_per_host=0,
            ssl=self._ssl,
            keepalive_timeout=KEEPALIVE_SECONDS,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._default_timeout,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=True,
            trust_env=False,  # proxies are ours (``_Proxies``): aiohttp's re-reads every call
        )
        return self._session

    async def request(
        self,
        method: str,
        url: str,
        *,
        data: Mapping[str, str] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
    ) -> Response:
        session = self._session or self._open()
        sent_headers = dict(headers) if headers else {}
        body: bytes | None = None
        if json is not None:
            body = _json_body(json)
            _default(sent_headers, "Content-Type", "application/json")
        elif data is not None:
            body = urlencode(data, doseq=True).encode()
            _default(sent_headers, "Content-Type", "application/x-www-form-urlencoded")
        if auth is not None:
            _default(sent_headers, "Authorization", _basic_auth(auth), replace=True)
        try:
            async with session.request(
                method,
                url,
                data=body,
                headers=sent_headers,
                allow_redirects=False,
                proxy=self._proxies.for_url(url) if self._proxies else None,
                timeout=self._default_timeout if timeout is None else self._client_timeout(timeout),
            ) as answer:
                content = await answer.read()
                return Response(answer.status, answer.headers, content, answer.reason or "")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _translate(exc) from exc

    async def get(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
    ) -> Response:
        return await self.request("GET", url, headers=headers, auth=auth)

    async def post(
        self,
        url: str,
        *,
        data: Mapping[str, str] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
    ) -> Response:
        return await self.request("POST", url, data=data, json=json, headers=headers, auth=auth)

    async def aclose(self) -> None:
        """Close every connection. Calls still in flight fail; the dispatcher drains first."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()
            # Lets the transports' close callbacks run before the loop goes away.
            await asyncio.sleep(0)

    async def __aenter__(self) -> ProviderClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def provider_client(concurrency: int, timeout: float) -> ProviderClient:
    """The client a worker's adapters share: ``concurrency`` connections at most, each call
    bounded by ``timeout`` seconds in all, connecting within 5 s."""
    return ProviderClient(concurrency, timeout)


if TYPE_CHECKING:  # both kinds of client fit what adapters take
    _lean: ProviderHttp = ProviderClient(1, 1.0)
    _httpx: ProviderHttp = httpx.AsyncClient()
