"""Twilio and Telnyx signatures checked through the real app, on both engines: on the URL and
body the app receives, for a direct deployment and behind a TLS-terminating reverse proxy.

Twilio signs the URL it was given; textdesk rebuilds it as ``TEXTDESK_BASE_URL`` + the path and
query received, and never from ``Host`` or ``X-Forwarded-*`` (``webhooks.public_url``). Telnyx
signs ``timestamp|body`` only.
"""

from __future__ import annotations

import base64
import socket
import threading
from contextlib import AbstractContextManager

import httpx
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from twilio.request_validator import RequestValidator

from tests.conftest import Org
from tests.web.webhook_calls import (
    Call,
    Hooks,
    app_client,
    make_channel,
    post,
    stored,
)
from textdesk.settings import Settings
from textdesk.store.db import Database
from textdesk.web.app import create_app

PUBLIC = "https://public.example"
#: What a TLS-terminating proxy in front of textdesk adds to the request it forwards.
PROXIED = {
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "public.example",
    "X-Forwarded-For": "198.51.100.7",
}


@pytest.fixture(params=["fast_path", "router"])
def route(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def public(settings: Settings, base_url: str = PUBLIC) -> Settings:
    return settings.model_copy(update={"base_url": base_url})


def client_for(
    settings: Settings, db: Database, route: str, base_url: str, **kw: object
) -> AbstractContextManager[TestClient]:
    return app_client(settings, db, route, base_url=base_url, **kw)


# --- Twilio ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("deployment", "client_url", "extra"),
    [
        ("direct", "https://public.example", {}),
        ("behind a TLS proxy", "http://internal:8000", PROXIED),
        ("behind a proxy, no forwarded headers", "http://internal:8000", {}),
    ],
)
def test_twilio_signature_over_the_public_url(
    settings: Settings,
    db: Database,
    acme: Org,
    route: str,
    deployment: str,
    client_url: str,
    extra: dict[str, str],
) -> None:
    hooks = Hooks("twilio", make_channel(db, acme.admin.principal, "twilio"), PUBLIC)
    call = hooks.sign(hooks.path("inbound"), hooks.inbound_body("SM1", "hello"))
    with client_for(public(settings), db, route, client_url) as client:
        for _ in range(2):  # Twilio retries: stored once
            answer = post(client, call, extra)
            assert answer.status_code == 200, answer.text
            assert answer.text == "<Response/>"
        # Behind a proxy, what the app sees is not the URL Twilio was given, so not what it
        # signed; a request signed for it is no request from Twilio.
        seen = hooks.sign(
            hooks.path("inbound"),
            hooks.inbound_body("SM2", "forged"),
            signed_url=f"{client_url}{hooks.path('inbound')}",
        )
        assert post(client, seen, extra).status_code == (200 if client_url == PUBLIC else 403)
    expected = [("SM1", "hello", "+12015550999")]
    if client_url == PUBLIC:
        expected.append(("SM2", "forged", "+12015550999"))
    assert stored(db) == expected


def test_twilio_behind_a_proxy_with_a_path_prefix(
    settings: Settings, db: Database, acme: Org, route: str
) -> None:
    """The proxy maps https://public.example/textdesk/ to the app's /."""
    hooks = Hooks("twilio", make_channel(db, acme.admin.principal, "twilio"), f"{PUBLIC}/textdesk")
    call = hooks.sign(hooks.path("inbound"), hooks.inbound_body("SM1", "hello"))
    with client_for(public(settings, f"{PUBLIC}/textdesk"), db, route, "http://internal") as client:
        assert post(client, call, PROXIED).status_code == 200
    assert [m[0] for m in stored(db)] == ["SM1"]


def test_twilio_below_a_root_path(settings: Settings, db: Database, acme: Org, route: str) -> None:
    """Served below ``--root-path /textdesk``: the path received includes the prefix, which
    TEXTDESK_BASE_URL already carries. Failed before: the prefix was counted twice (403)."""
    base = f"{PUBLIC}/textdesk"
    hooks = Hooks("twilio", make_channel(db, acme.admin.principal, "twilio"), base)
    call = hooks.sign(hooks.path("inbound"), hooks.inbound_body("SM1", "hello"))
    sent = Call(f"/textdesk{call.path}", call.headers, call.body)
    with client_for(
        public(settings, base), db, route, "http://internal", root_path="/textdesk"
    ) as client:
        answer = post(client, sent)
        assert answer.status_code == 200, answer.text
    assert [m[0] for m in stored(db)] == ["SM1"]


@pytest.mark.parametrize(
    ("configured", "sent", "accepted"),
    [
        ("?src=twilio", "?src=twilio", True),
        ("?note=a%20b&src=tw", "?note=a%20b&src=tw", True),
        ("?note=caf%C3%A9", "?note=caf%C3%A9", True),
        ("?src=twilio", "?src=other", False),
        ("?src=twilio", "", False),
        ("", "?src=twilio", False),
        ("?a=1&b=2", "?b=2&a=1", False),  # the query is signed as written, not as parsed
    ],
)
def test_twilio_signature_covers_the_query_string(
    settings: Settings,
    db: Database,
    acme: Org,
    route: str,
    configured: str,
    sent: str,
    accepted: bool,
) -> None:
    hooks = Hooks("twilio", make_channel(db, acme.admin.principal, "twilio"), PUBLIC)
    path = hooks.path("inbound")
    call = hooks.sign(
        path + sent, hooks.inbound_body("SM1", "hi"), signed_url=PUBLIC + path + configured
    )
    with client_for(public(settings), db, route, "http://internal:8000") as client:
        answer = post(client, call, PROXIED)
        assert answer.status_code == (200 if accepted else 403), answer.text
    assert len(stored(db)) == (1 if accepted else 0)


def test_twilio_port_spelling(settings: Settings, db: Database, acme: Org, route: str) -> None:
    """Twilio may sign https://host:443/… for https://host/… (and the reverse)."""
    hooks = Hooks("twilio", make_channel(db, acme.admin.principal, "twilio"), PUBLIC)
    path = hooks.path("inbound")
    with_port = hooks.sign(
        path, hooks.inbound_body("SM1", "hi"), signed_url=f"https://public.example:443{path}"
    )
    other_port = hooks.sign(
        path, hooks.inbound_body("SM2", "hi"), signed_url=f"https://public.example:8443{path}"
    )
    with client_for(public(settings), db, route, "http://internal:8000") as client:
        assert post(client, with_port).status_code == 200
        assert post(client, other_port).status_code == 403
    assert [m[0] for m in stored(db)] == ["SM1"]


def test_twilio_forged_and_misdirected_requests_change_nothing(
    settings: Settings, db: Database, acme: Org, route: str
) -> None:
    ch = make_channel(db, acme.admin.principal, "twilio")
    hooks = Hooks("twilio", ch, PUBLIC)
    path = hooks.path("inbound")
    body = hooks.inbound_body("SM1", "hi")
    good = hooks.sign(path, body)
    wrong_token = RequestValidator("not-the-token").compute_signature(
        PUBLIC + path, {"MessageSid": "SM1"}
    )
    attacker = "https://attacker.example"
    with client_for(public(settings), db, route, "http://internal:8000") as client:
        # No signature, another token's, a tampered body.
        unsigned = {k: v for k, v in good.headers.items() if k != "X-Twilio-Signature"}
        assert client.post(path, content=body, headers=unsigned).status_code == 403
        forged = {**good.headers, "X-Twilio-Signature": wrong_token}
        assert client.post(path, content=body, headers=forged).status_code == 403
        tampered = body.replace(b"Body=hi", b"Body=STOP")
        assert client.post(path, content=tampered, headers=good.headers).status_code == 403
        # Signed for another host, sent with that host in Host and X-Forwarded-Host: the
        # headers don't change which URL is checked, so it can't verify here.
        elsewhere = hooks.sign(path, body, signed_url=attacker + path)
        spoofed = {"Host": "attacker.example", "X-Forwarded-Host": "attacker.example"}
        assert post(client, elsewhere, {**spoofed, "X-Forwarded-Proto": "https"}).status_code == 403
        # Signed for another channel's URL or the status URL, sent to this one.
        other = hooks.sign(path, body, signed_url=f"{PUBLIC}/webhooks/twilio/{ch + 1}/inbound")
        assert post(client, other).status_code == 403
        status_url = hooks.sign(path, body, signed_url=PUBLIC + hooks.path("status"))
        assert post(client, status_url).status_code == 403
    assert stored(db) == []


def test_twilio_checks_the_parameters_it_uses(
    settings: Settings, db: Database, acme: Org, route: str
) -> None:
    """A body that is not UTF-8 was verified as "no parameters" and then read with
    replacement characters: a signature over the bare URL carried any message. Failed before
    (200, a forged message stored)."""
    hooks = Hooks("twilio", make_channel(db, acme.admin.principal, "twilio"), PUBLIC)
    path = hooks.path("inbound")
    body = hooks.inbound_body("SMforged", "forged") + b"&junk=\xff"
    bare = RequestValidator("twilio-auth-token-for-tests").compute_signature(PUBLIC + path, {})
    headers = {"content-type": "application/x-www-form-urlencoded", "X-Twilio-Signature": bare}
    with client_for(public(settings), db, route, "http://internal:8000") as client:
        answer = client.post(path, content=body, headers=headers)
        assert answer.status_code == 400, answer.text
        assert "UTF-8" in answer.json()["detail"]
    assert stored(db) == []


# --- Telnyx ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("client_url", "extra"),
    [("https://public.example", {}), ("http://internal:8000", PROXIED)],
    ids=["direct", "behind a TLS proxy"],
)
def test_telnyx_signature_over_the_body(
    settings: Settings,
    db: Database,
    acme: Org,
    route: str,
    client_url: str,
    extra: dict[str, str],
) -> None:
    hooks = Hooks("telnyx", make_channel(db, acme.admin.principal, "telnyx"), PUBLIC)
    call = hooks.sign(hooks.path("inbound"), hooks.inbound_body("tx-1", "hello"))
    with client_for(public(settings), db, route, client_url) as client:
        for _ in range(2):  # Telnyx retries: stored once
            answer = post(client, call, extra)
            assert answer.status_code == 200, answer.text
    assert stored(db) == [("tx-1", "hello", "+12015550999")]


def test_telnyx_forged_requests_change_nothing(
    settings: Settings, db: Database, acme: Org, route: str
) -> None:
    hooks = Hooks("telnyx", make_channel(db, acme.admin.principal, "telnyx"), PUBLIC)
    path = hooks.path("inbound")
    body = hooks.inbound_body("tx-1", "hi")
    good = hooks.sign(path, body)
    stamp = good.headers["telnyx-timestamp"]
    other_key = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
    cases = {
        "no signature": {"content-type": "application/json", "telnyx-timestamp": stamp},
        "another key": {
            **good.headers,
            "telnyx-signature-ed25519": base64.b64encode(
                other_key.sign(stamp.encode() + b"|" + body)
            ).decode(),
        },
        "stale": hooks.sign(path, body, timestamp=str(int(stamp) - 3600)).headers,
        # Header values arrive as Latin-1: "²" (0xB2) passes str.isdigit, and int() then
        # raised ValueError (500 before).
        "superscript digit in the timestamp": {
            **good.headers,
            "telnyx-timestamp": stamp[:-1].encode() + b"\xb2",  # type: ignore[dict-item]
        },
        "400-digit timestamp": hooks.sign(path, body, timestamp="9" * 400).headers,
    }
    with client_for(public(settings), db, route, "http://internal:8000") as client:
        for name, headers in cases.items():
            answer = client.post(path, content=body, headers=headers)
            assert answer.status_code == 403, (name, answer.text)
        tampered = body.replace(b'"hi"', b'"STOP"')
        assert client.post(path, content=tampered, headers=good.headers).status_code == 403
    assert stored(db) == []


def test_telnyx_signature_does_not_cover_the_url(
    settings: Settings, db: Database, acme: Org, route: str
) -> None:
    """Telnyx signs ``timestamp|body`` alone: the host a request names plays no part either
    way (documented in docs/providers.md: replay protection is the timestamp tolerance plus
    the provider id de-duplication)."""
    hooks = Hooks("telnyx", make_channel(db, acme.admin.principal, "telnyx"), PUBLIC)
    call = hooks.sign(hooks.path("inbound"), hooks.inbound_body("tx-1", "hi"))
    with client_for(public(settings), db, route, "http://internal:8000") as client:
        spoofed = {"Host": "attacker.example", "X-Forwarded-Host": "attacker.example"}
        assert post(client, call, spoofed).status_code == 200
    assert [m[0] for m in stored(db)] == ["tx-1"]


# --- a real server on loopback -----------------------------------------------------------------


def serve(settings: Settings, db: Database) -> tuple[uvicorn.Server, threading.Thread, str]:
    """uvicorn as ``textdesk serve`` runs it (``proxy_headers=True``, which trusts loopback's
    X-Forwarded-Proto), on a socket bound before the thread starts: connections wait in the
    backlog until it serves, so nothing has to poll for readiness."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        create_app(settings, db), log_config=None, proxy_headers=True, lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    return server, thread, f"http://127.0.0.1:{port}"


@pytest.mark.parametrize("provider", ["twilio", "telnyx"])
def test_real_server_behind_a_tls_proxy(
    settings: Settings, db: Database, acme: Org, provider: str
) -> None:
    hooks = Hooks(provider, make_channel(db, acme.admin.principal, provider), PUBLIC)
    path = hooks.path("inbound")
    server, thread, local = serve(public(settings), db)
    try:
        with httpx.Client(base_url=local, timeout=30) as http:
            call = hooks.sign(path, hooks.inbound_body("real-1", "hello"))
            answer = http.post(
                path, content=call.body, headers={**call.headers, **PROXIED, "Host": "internal"}
            )
            assert answer.status_code == 200, answer.text
            if provider == "twilio":
                seen = hooks.sign(path, hooks.inbound_body("real-2", "x"), signed_url=local + path)
                assert http.post(path, content=seen.body, headers=seen.headers).status_code == 403
                elsewhere = hooks.sign(
                    path,
                    hooks.inbound_body("real-3", "x"),
                    signed_url="https://attacker.example" + path,
                )
                spoofed = {**elsewhere.headers, **PROXIED, "X-Forwarded-Host": "attacker.example"}
                assert http.post(path, content=elsewhere.body, headers=spoofed).status_code == 403
    finally:
        server.should_exit = True
        thread.join(30)
    assert not thread.is_alive()
    assert stored(db) == [("real-1", "hello", "+12015550999")]
