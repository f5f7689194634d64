"""The carrier over real loopback sockets (standalone mode) and mounted under a parent app."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from tests.providers.simulator.harness import APP, CHANNEL, FAST, SETTLE, sms
from textdesk.domain.states import MessageStatus
from textdesk.providers.base import TemporaryFailure
from textdesk.providers.simulator import SimulatorConfig, create, create_carrier_app
from textdesk.providers.simulator.__main__ import build_parser

pytestmark = pytest.mark.anyio


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def standalone() -> Iterator[str]:
    """The carrier served by uvicorn on a loopback port, as ``python -m ...`` would."""
    port = _free_port()
    app = create_carrier_app(SimulatorConfig(**{**FAST, "hang_ms": 600_000}))
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60  # a safety net
    while not server.started:
        assert time.monotonic() < deadline, "the simulator did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        server.force_exit = True  # don't wait for the 0504 request still hanging
        thread.join(timeout=5)


async def test_standalone_over_real_http(standalone: str) -> None:
    # Callbacks go to a loopback port nobody listens on: refused, retried, dropped, not fatal.
    nowhere = f"http://127.0.0.1:{_free_port()}/webhooks/simulator/7/status"
    message = replace(sms(key="real"), status_callback_url=nowhere)
    async with httpx.AsyncClient() as http:
        provider = create({"url": standalone, "timeout": 60}, CHANNEL, http)
        impatient = create({"url": standalone, "timeout": 0.5}, CHANNEL, http)
        sent = await provider.send(message)
        assert (await provider.send(message)).provider_message_id == sent.provider_message_id
        report = await provider.lookup(sent.provider_message_id)
        assert report is not None
        assert report.status in {MessageStatus.SENT, MessageStatus.DELIVERED}

        with pytest.raises(TemporaryFailure, match="timeout"):
            await impatient.send(replace(sms(to="+12025550504"), status_callback_url=nowhere))

        stats = (await http.get(f"{standalone}/v1/stats")).json()
        assert stats["accepted"] == 2
        assert stats["duplicates_suppressed"] == 1


async def test_mounted_under_simulator() -> None:
    parent = FastAPI()
    transport = httpx.ASGITransport(app=parent)
    async with httpx.AsyncClient(transport=transport) as http:
        # Callbacks come back to the parent app (which 404s them), never to the network.
        carrier_app = create_carrier_app(SimulatorConfig(**FAST), http=http)
        parent.mount("/simulator", carrier_app)
        provider = create({}, CHANNEL, http)  # default url: {base_url}/simulator
        assert provider.url == f"{APP}/simulator"
        sent = await provider.send(sms())
        assert await provider.lookup(sent.provider_message_id) is not None
        assert (await http.get(f"{APP}/simulator/v1/stats")).json()["accepted"] == 1
        await carrier_app.state.carrier.wait_idle(SETTLE)
        await carrier_app.state.carrier.aclose()


def test_command_line() -> None:
    args = build_parser().parse_args(["--host", "0.0.0.0", "--port", "9200"])  # noqa: S104
    assert (args.host, args.port, args.log_level) == ("0.0.0.0", 9200, "warning")  # noqa: S104
    defaults = build_parser().parse_args([])
    assert (defaults.host, defaults.port) == ("127.0.0.1", 9100)
