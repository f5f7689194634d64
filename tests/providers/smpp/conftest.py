"""The SMPP peer (a real SMSC: ``tests/smpp_peer/server.js`` on the npm ``smpp`` package) and
helpers to drive it.

The peer runs once per test session (per xdist worker) on free loopback ports; each test resets
its events and configuration. It needs ``node_modules/smpp``: run ``npm ci`` (``make install``
does). Missing it fails the tests, in CI and locally alike: the SMPP tests are not optional.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from textdesk.providers.base import ChannelContext, InboundSms, StatusReport

ROOT = Path(__file__).resolve().parents[3]
SERVER = ROOT / "tests" / "smpp_peer" / "server.js"
SYSTEM_ID = "textdesk"
PASSWORD = "secret"
SENDER = "+15550001111"


class Peer:
    def __init__(self, smpp_port: int, control_port: int, log: Path) -> None:
        self.port = smpp_port
        self.log = log
        self._http = httpx.Client(base_url=f"http://127.0.0.1:{control_port}", timeout=5)

    def close(self) -> None:
        self._http.close()

    def _post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self._http.post(path, json=body or {})
        response.raise_for_status()
        return response.json()

    def reset(self) -> None:
        self._post("/reset")

    def configure(self, **values: Any) -> None:
        self._post("/config", values)

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = self._http.get("/events").json()
        return [e for e in events if kind is None or e["event"] == kind]

    def submits(self) -> list[dict[str, Any]]:
        return self.events("submit_sm")

    def deliver(
        self,
        short_message: bytes,
        *,
        source: str = "15557654321",
        destination: str = "15550001111",
        esm_class: int = 0,
        data_coding: int = 0,
        tlvs: dict[str, int | str] | None = None,
        sequence_number: int | None = None,
        repeat: int = 1,
    ) -> None:
        """A deliver_sm to every bound session; ``repeat`` sends the very same PDU (one
        sequence number) that many times, as an SMSC re-delivering it does."""
        body: dict[str, Any] = {
            "source_addr": source,
            "destination_addr": destination,
            "esm_class": esm_class,
            "data_coding": data_coding,
            "short_message_hex": short_message.hex(),
            "tlvs": tlvs or {},
            "repeat": repeat,
        }
        if sequence_number is not None:
            body["sequence_number"] = sequence_number
        self._post("/deliver", body)

    def enquire_link(self) -> None:
        self._post("/enquire_link")

    def drop(self) -> int:
        return int(self._post("/drop")["dropped"])

    def outage(self, down: bool) -> None:
        """``True``: the SMSC goes away (connections dropped, new ones closed at once)."""
        self.configure(down=down)
        if down:
            self.drop()

    def bound_sessions(self) -> int:
        return int(self._http.get("/sessions").json()["bound"])


def _fail_without_peer() -> None:
    if shutil.which("node") is None:
        pytest.fail("the SMPP tests need Node.js (`node`) on PATH to run tests/smpp_peer/server.js")
    if not (ROOT / "node_modules" / "smpp").is_dir():
        pytest.fail(
            "node_modules/smpp is missing: run `npm ci` in the repository root (`make install` "
            "does it) so the SMPP tests can start their peer"
        )


@pytest.fixture(scope="session")
def smpp_peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peer]:
    _fail_without_peer()
    log = tmp_path_factory.mktemp("smpp-peer") / "peer.log"
    with log.open("wb") as out:
        # stdout goes to a file: a pipe nobody reads would fill up and block the peer.
        process = subprocess.Popen(
            ["node", str(SERVER), "--port", "0", "--control-port", "0"],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "SMPP_PEER_SYSTEM_ID": SYSTEM_ID, "SMPP_PEER_PASSWORD": PASSWORD},
        )
    try:
        ports = _wait_listening(process, log)
        peer = Peer(ports["smpp_port"], ports["control_port"], log)
        yield peer
        peer.close()
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def _wait_listening(process: subprocess.Popen[bytes], log: Path) -> dict[str, int]:
    deadline = time.monotonic() + 120  # a safety net: Node starts slowly on a loaded machine
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the SMPP peer exited with {process.returncode}:\n{log.read_text()}")
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("{") and '"listening"' in line:
                event = json.loads(line)
                return {"smpp_port": event["smpp_port"], "control_port": event["control_port"]}
        time.sleep(0.05)
    pytest.fail(f"the SMPP peer did not start listening:\n{log.read_text()}")


@pytest.fixture
def peer(smpp_peer: Peer) -> Peer:
    """The session's peer with fresh events and the default configuration."""
    smpp_peer.reset()
    return smpp_peer


@dataclass
class FakeSink:
    """Collects what the adapter pushes, like the core's ReportSink."""

    statuses: list[StatusReport] = field(default_factory=list)
    inbound_messages: list[InboundSms] = field(default_factory=list)
    channels: set[int] = field(default_factory=set)

    async def inbound(self, channel_id: int, sms: InboundSms) -> None:
        self.channels.add(channel_id)
        self.inbound_messages.append(sms)

    async def status(self, channel_id: int, report: StatusReport) -> None:
        self.channels.add(channel_id)
        self.statuses.append(report)


def config_for(peer: Peer, **overrides: Any) -> dict[str, Any]:
    return {
        "host": "127.0.0.1",
        "port": peer.port,
        "system_id": SYSTEM_ID,
        "password": PASSWORD,
        **overrides,
    }


def context(sink: FakeSink, channel_id: int = 7) -> ChannelContext:
    return ChannelContext(
        channel_id=channel_id, sender=SENDER, base_url="http://textdesk.test", sink=sink
    )


async def eventually(
    condition: Callable[[], Any], timeout: float = 60.0, message: str = "condition"
) -> Any:
    """Poll ``condition`` on the event loop (so the adapter's sink calls keep running). The
    timeout is a safety net for a hung test, never a measurement: it returns as soon as the
    condition holds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message}")
        await asyncio.sleep(0.02)
