"""The SMPP adapter against a real SMPP peer (``tests/smpp_peer/server.js``).

Each test runs its own event loop with ``asyncio.run`` and closes its adapter (unbind) at the
end; the peer asserts the exact PDUs we sent (data_coding, esm_class, UDH, short_message).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest

from textdesk.domain.states import MessageStatus
from textdesk.providers import registry
from textdesk.providers.base import (
    AmbiguousFailure,
    AuthFailure,
    InvalidNumber,
    OutboundSms,
    Provider,
    SendResult,
    SignatureError,
    TemporaryFailure,
    Throttled,
    WebhookRequest,
)
from textdesk.providers.smpp import SmppProvider, create
from textdesk.providers.smpp.text import gsm_encode

from .conftest import SENDER, FakeSink, Peer, config_for, context, eventually

T = TypeVar("T")
_counter = iter(range(1, 1_000_000))


def sms(to: str, body: str = "Hello from textdesk") -> OutboundSms:
    n = next(_counter)
    return OutboundSms(
        message_id=n,
        sender=SENDER,
        to=to,
        body=body,
        idempotency_key=f"key-{n}",
        status_callback_url="http://textdesk.test/status",
    )


def run_with(
    peer: Peer,
    scenario: Callable[[SmppProvider, FakeSink], Awaitable[T]],
    **config: Any,
) -> T:
    async def main() -> T:
        sink = FakeSink()
        provider = create(config_for(peer, **config), context(sink))
        try:
            return await scenario(provider, sink)
        finally:
            await provider.aclose()

    return asyncio.run(main())


def short_message(submit: dict[str, Any]) -> bytes:
    return bytes.fromhex(submit["short_message_hex"])


# --- binding ---------------------------------------------------------------------------------


def test_registry_builds_the_adapter_and_it_binds(peer: Peer) -> None:
    async def main() -> None:
        provider = registry.create("smpp", config_for(peer), context(FakeSink()), None)  # type: ignore[arg-type]
        assert isinstance(provider, SmppProvider)
        try:
            await eventually(lambda: provider.bound, message="bind")
        finally:
            await provider.aclose()

    asyncio.run(main())
    (bind,) = peer.events("bind")
    assert bind["status"] == 0
    assert bind["system_id"] == "textdesk"
    assert peer.events("unbind"), "aclose() unbinds"


def test_wrong_password_is_an_auth_failure(peer: Peer) -> None:
    async def scenario(provider: SmppProvider, sink: FakeSink) -> None:
        with pytest.raises(AuthFailure) as info:
            await provider.send(sms("+15551230001"))
        assert info.value.code == "smpp:0x0E"
        assert not info.value.retryable

    run_with(peer, scenario, password="wrong")
    assert peer.events("bind")[0]["status"] == 0x0E
    assert peer.submits() == []


def test_unknown_system_id_is_an_auth_failure(peer: Peer) -> None:
    async def scenario(provider: SmppProvider, sink: FakeSink) -> None:
        with pytest.raises(AuthFailure, match="smpp:0x0F"):
            await provider.send(sms("+15551230001"))

    run_with(peer, scenario, system_id="nobody")


def test_no_smsc_listening_is_temporary() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again before the adapter connects

    async def main() -> None:
        provider = create(
            {
                "host": "127.0.0.1",
                "port": port,
                "system_id": "x",
                "password": "y",
                "submit_timeout": 0.5,
            },
            context(FakeSink()),
        )
        try:
            with pytest.raises(TemporaryFailure, match="smpp:not_bound") as info:
                await provider.send(sms("+15551230001"))
            assert not isinstance(info.value, AmbiguousFailure), "nothing was sent"
            assert "cannot bind" in str(info.value)
        finally:
            await provider.aclose()

    asyncio.run(main())


# --- submit_sm -------------------------------------------------------------------------------


def test_single_gsm_message(peer: Peer) -> None:
    body = "Hi @ £5 {ok} €"

    async def scenario(provider: SmppProvider, sink: FakeSink) -> SendResult:
        return await provider.send(sms("+15551230001", body))

    result = run_with(peer, scenario)
    (submit,) = peer.submits()
    assert result == SendResult(
        provider_message_id=submit["message_id"], status=MessageStatus.SENT, segments=1
    )
    assert submit["data_coding"] == 0
    assert submit["esm_class"] == 0
    assert submit["registered_delivery"] == 1
    assert (submit["source_addr"], submit["source_addr_ton"], submit["source_addr_npi"]) == (
        "15550001111",
        1,
        1,
    )
    assert (submit["destination_addr"], submit["dest_addr_ton"], submit["dest_addr_npi"]) == (
        "15551230001",
        1,
        1,
    )
    # Unpacked GSM 03.38: "@" is 0x00, "£" 0x01, "{" "}" "€" are ESC pairs.
    assert short_message(submit) == bytes.fromhex("4869200020013520" + "1b286f6b1b29" + "201b65")


def test_alphanumeric_sender_and_validity_period(peer: Peer) -> None:
    valid_until = datetime.now(UTC) + timedelta(hours=2)
    message = replace(sms("+15551230001"), sender="ACME", valid_until=valid_until)

    async def scenario(provider: SmppProvider, sink: FakeSink) -> SendResult:
        return await provider.send(message)

    run_with(peer, scenario)
    (submit,) = peer.submits()
    assert (submit["source_addr"], submit["source_addr_ton"], submit["source_addr_npi"]) == (
        "ACME",
        5,
        0,
    )
    # SMPP absolute time, UTC: YYMMDDhhmmss, tenths, quarter hours from UTC, sign.
    assert submit["validity_period"] == valid_until.strftime("%y%m%d%H%M%S") + "000+"


def test_single_ucs2_message(peer: Peer) -> None:
    body = "Привет, ça va? 👋"

    async def scenario(provider: SmppProvider, sink: FakeSink) -> SendResult:
        return await provider.send(sms("+15551230001", body))

    result = run_with(peer, scenario)
    (submit,) = peer.submits()
    assert result.segments == 1
    assert submit["data_coding"] == 8
    assert submit["esm_class"] == 0
    assert short_message(submit) == body.encode("utf-16-be")


def test_long_gsm_message_in_three_parts_with_udh(peer: Peer) -> None:
    # 152 septets, then a euro sign (ESC + septet) that must not straddle the boundary.
    body = "a" * 152 + "€" + "b" * 151 + "[" + "c" * 20

    async def scenario(provider: SmppProvider, sink: FakeSink) -> SendResult:
        return await provider.send(sms("+15551230001", body))

    result = run_with(peer, scenario)
    submits = peer.submits()
    assert len(submits) == 3
    assert result.segments == 3
    assert result.provider_message_id == submits[-1]["message_id"], "the last part's id"
    payloads = [short_message(s) for s in submits]
    reference = payloads[0][3]
    for seq, (submit, payload) in enumerate(zip(submits, payloads, strict=True), start=1):
        assert submit["esm_class"] == 0x40
        assert submit["data_coding"] == 0
        assert submit["registered_delivery"] == 1
        assert payload[:6] == bytes([0x05, 0x00, 0x03, reference, 3, seq])
        assert len(payload) - 6 <= 153
    assert payloads[0][6:] == b"a" * 152
    assert payloads[1][6:8] == b"\x1b\x65"  # the euro sign opens part 2 whole
    assert payloads[1][-1] != 0x1B and payloads[0][-1] != 0x1B
    assert b"".join(p[6:] for p in payloads) == gsm_encode(body)


def test_long_ucs2_message_keeps_emoji_whole(peer: Peer) -> None:
    body = "ж" * 66 + "😀" + "ы" * 60 + "👍🏽" + "й" * 10

    async def scenario(provider: SmppProvider, sink: FakeSink) -> SendResult:
        return await provider.send(sms("+15551230001", body))

    result = run_with(peer, scenario)
    submits = peer.submits()
    assert result.segments == len(submits) == 3
    payloads = [short_message(s) for s in submits]
    for seq, (submit, payload) in enumerate(zip(submits, payloads, strict=True), start=1):
        assert submit["data_coding"] == 8
        assert submit["esm_class"] == 0x40
        assert payload[:6] == bytes([5, 0, 3, payloads[0][3], 3, seq])
        assert len(payload) <= 6 + 134
    assert payloads[0][6:] == ("ж" * 66).encode("utf-16-be")
    assert payloads[1][6:10] == "😀".encode("utf-16-be")
    assert b"".join(p[6:] for p in payloads).decode("utf-16-be") == body


@pytest.mark.parametrize(
    ("to", "error", "code"),
    [
        ("+15551230429", Throttled, "smpp:0x58"),
        ("+15551230404", InvalidNumber, "smpp:0x0B"),
        ("+15551230008", TemporaryFailure, "smpp:0x08"),
    ],
)
def test_submit_errors_map_to_the_taxonomy(
    peer: Peer, to: str, error: type[Exception], code: str
) -> None:
    async def scenario(provider: SmppProvider, sink: FakeSink) -> None:
        with pytest.raises(error) as info:
            await provider.send(sms(to))
        assert getattr(info.value, "code", None) == code

    run_with(peer, scenario)
    assert len(peer.submits()) == 1


def test_unanswered_submit_is_ambiguous(peer: Peer) -> None:
    async def scenario(provider: SmppProvider, sink: FakeSink) -> None:
        with pytest.raises(AmbiguousFailure, match="smpp:timeout") as info:
            await provider.send(sms("+15551230999"))  # the peer never answers this one
        assert info.value.retryable

    run_with(peer, scenario, submit_timeout=0.4)


def test_window_limits_submits_in_flight(peer: Peer) -> None:
    async def scenario(provider: SmppProvider, sink: FakeSink) -> None:
        await provider.start()
        await eventually(lambda: provider.bound)
        loop = asyncio.get_running_loop()
        started = loop.time()
        stuck = asyncio.create_task(provider.send(sms("+15551230999")))  # never answered
        await eventually(lambda: peer.submits(), message="the first submit")
        # The second waits for room at most submit_timeout too: starting it half-way through
        # the stuck one's wait leaves it a second after the room is freed, however slow the
        # machine is in between.
        await asyncio.sleep(max(0.0, started + 1.0 - loop.time()))
        waiting = asyncio.create_task(provider.send(sms("+15551230001")))
        await asyncio.sleep(0.3)  # the second's chance to go out wrongly
        # peer.submits() blocks this loop, so the stuck send cannot time out between the two
        # reads: while it is still waiting, the window is full and only one submit is out.
        submits, stuck_waiting = len(peer.submits()), not stuck.done()
        assert submits == 1 or not stuck_waiting, "the second waits for room in the window"
        with pytest.raises(AmbiguousFailure):
            await stuck
        # The stuck one's slot is freed when it times out; then the second goes through.
        result = await waiting
        assert result.status is MessageStatus.SENT
        assert len(peer.submits()) == 2

    run_with(peer, scenario, window=1, submit_timeout=2.0)


# --- delivery receipts -----------------------------------------------------------------------


def test_receipts_map_to_delivered_undelivered_and_failed(peer: Peer) -> None:
    async def scenario(provider: SmppProvider, sink: FakeSink) -> list[tuple[str, Any]]:
        results = [
            await provider.send(sms("+15551230001")),  # DELIVRD
            await provider.send(sms("+15551230500")),  # UNDELIV
            await provider.send(sms("+15551230502")),  # REJECTD
            await provider.send(sms("+15551230503")),  # ACCEPTD: no report
        ]
        await eventually(lambda: len(sink.statuses) >= 3)
        await asyncio.sleep(0.1)
        by_id = {r.provider_message_id: r for r in sink.statuses}
        assert len(sink.statuses) == 3
        assert sink.channels == {7}
        return [(r.provider_message_id, by_id.get(r.provider_message_id)) for r in results]

    outcomes = run_with(peer, scenario)
    delivered, undelivered, rejected, accepted = (report for _id, report in outcomes)
    assert delivered.status is MessageStatus.DELIVERED and delivered.error_code is None
    assert undelivered.status is MessageStatus.UNDELIVERED
    assert undelivered.error_code == "smpp:UNDELIV:001"
    assert rejected.status is MessageStatus.FAILED
    assert rejected.error_code == "smpp:REJECTD:001"
    assert accepted is None
    responses = peer.events("deliver_sm_resp")
    assert len(responses) == 4 and all(r["status"] == 0 for r in responses)


@pytest.mark.parametrize(
    ("resp_format", "receipt_format", "adapter_format"),
    [
        ("hex", "decimal", "auto"),
        ("decimal", "hex", "auto"),
        ("hex", "decimal", "decimal"),
        ("decimal", "hex", "hex"),
        ("hex", "hex", "auto"),
    ],
)
def test_receipt_ids_in_the_other_base_are_matched(
    peer: Peer, resp_format: str, receipt_format: str, adapter_format: str
) -> None:
    # Text only: the id in the receipt is in the other base than submit_sm_resp's.
    peer.configure(resp_id_format=resp_format, receipt_id_format=receipt_format, receipt_tlvs=False)

    async def scenario(provider: SmppProvider, sink: FakeSink) -> tuple[SendResult, str]:
        result = await provider.send(sms("+15551230001"))
        await eventually(lambda: sink.statuses)
        return result, sink.statuses[0].provider_message_id

    result, reported = run_with(peer, scenario, receipt_id_format=adapter_format)
    (submit,) = peer.submits()
    (receipt,) = peer.events("receipt")
    if resp_format != receipt_format:
        assert submit["message_id"] != receipt["id"]
    assert reported == result.provider_message_id
    assert int(result.provider_message_id, 16 if resp_format == "hex" else 10) == int(
        submit["message_id"], 16 if resp_format == "hex" else 10
    )


@pytest.mark.parametrize("receipt_format", ["hex", "decimal"])
def test_receipt_before_the_submit_response(peer: Peer, receipt_format: str) -> None:
    peer.configure(receipt_id_format=receipt_format, receipt_tlvs=False)

    async def scenario(provider: SmppProvider, sink: FakeSink) -> SendResult:
        result = await provider.send(sms("+15551230666"))
        await eventually(lambda: sink.statuses)
        return result

    result = run_with(peer, scenario)
    (receipt,) = peer.events("receipt")
    assert receipt["early"] is True
    (submit,) = peer.submits()
    assert result.provider_message_id == submit["message_id"]
    # The receipt beat the response, yet send() knows the outcome.
    assert result.status is MessageStatus.DELIVERED


# --- inbound -----------------------------------------------------------------------------------


def test_inbound_single_messages(peer: Peer) -> None:
    async def scenario(provider: SmppProvider, sink: FakeSink) -> None:
        await provider.start()
        await eventually(lambda: provider.bound)
        peer.deliver(gsm_encode("Yes please {10}"))
        peer.deliver("Ça marche 👍".encode("utf-16-be"), data_coding=8, source="447700900123")
        peer.deliver("Grüße".encode("latin-1"), data_coding=3)
        await eventually(lambda: len(sink.inbound_messages) == 3)
        gsm, ucs2, latin1 = sink.inbound_messages
        assert (gsm.sender, gsm.recipient, gsm.body) == (
            "+15557654321",
            "+15550001111",
            "Yes please {10}",
        )
        assert (ucs2.sender, ucs2.body) == ("+447700900123", "Ça marche 👍")
        assert latin1.body == "Grüße"

    run_with(peer, scenario)
    responses = peer.events("deliver_sm_resp")
    assert [r["status"] for r in responses] == [0, 0, 0]


def test_inbound_concatenated_parts_out_of_order(peer: Peer) -> None:
    text = "This is a long reply from a customer. " * 6
    chunks = [text[i : i + 100] for i in range(0, len(text), 100)]
    assert len(chunks) == 3

    async def scenario(provider: SmppProvider, sink: FakeSink) -> None:
        await provider.start()
        await eventually(lambda: provider.bound)
        for seq in (3, 1, 2):
            udh = bytes([5, 0, 3, 0x7E, 3, seq])
            peer.deliver(udh + gsm_encode(chunks[seq - 1]), esm_class=0x40)
        # The same with a 16-bit reference, UCS-2 and a different sender.
        ucs2 = "Два сообщения 😀 подряд".encode("utf-16-be")
        halves = [ucs2[:20], ucs2[20:]]
        for seq in (2, 1):
            udh = bytes([6, 8, 4, 0x12, 0x34, 2, seq])
            peer.deliver(udh + halves[seq - 1], esm_class=0x40, data_coding=8, source="4915112345")
        # And with the SAR TLVs.
        for seq, part in ((2, b"world"), (1, b"hello ")):
            peer.deliver(
                part,
                source="3361234567",
                tlvs={"sar_msg_ref_num": 513, "sar_total_segments": 2, "sar_segment_seqnum": seq},
            )
        await eventually(lambda: len(sink.inbound_messages) == 3)
        bodies = {m.sender: m.body for m in sink.inbound_messages}
        assert bodies == {
            "+15557654321": text,
            "+4915112345": "Два сообщения 😀 подряд",
            "+3361234567": "hello world",
        }

    run_with(peer, scenario)
    assert len(peer.events("deliver_sm_resp")) == 7


def test_inbound_incomplete_set_is_delivered_after_the_timeout(peer: Peer) -> None:
    async def scenario(provider: SmppProvider, sink: FakeSink) -> None:
        await provider.start()
        await eventually(lambda: provider.bound)
        peer.deliver(bytes([5, 0, 3, 1, 2, 1]) + gsm_encode("only the first half"), esm_class=0x40)
        await eventually(lambda: sink.inbound_messages)
        (message,) = sink.inbound_messages
        assert message.body == "only the first half"
        assert message.raw["missing_parts"] == [2]

    run_with(peer, scenario, reassembly_timeout=0.3)


# --- keepalive and reconnect -----------------------------------------------------------------


def test_enquire_link_both_ways(peer: Peer) -> None:
    async def scenario(provider: SmppProvider, sink: FakeSink) -> None:
        await provider.start()
        await eventually(lambda: provider.bound)
        # Ours: sent when the link is idle.
        await eventually(lambda: len(peer.events("enquire_link")) >= 2)
        # Theirs: answered.
        peer.enquire_link()
        await eventually(lambda: peer.events("enquire_link_resp"))

    run_with(peer, scenario, enquire_link_interval=0.2)
    assert len(peer.events("bind")) == 1, "a healthy link is never re-bound"


def test_unanswered_enquire_link_reconnects(peer: Peer) -> None:
    peer.configure(answer_enquire_link=False)

    async def scenario(provider: SmppProvider, sink: FakeSink) -> None:
        await provider.start()
        await eventually(lambda: provider.bound)
        await eventually(lambda: provider.binds >= 2, message="re-bind")

    run_with(peer, scenario, enquire_link_interval=0.2)
    assert len(peer.events("bind")) >= 2


def test_reconnects_after_the_peer_drops_the_connection(peer: Peer) -> None:
    async def scenario(provider: SmppProvider, sink: FakeSink) -> tuple[SendResult, SendResult]:
        first = await provider.send(sms("+15551230001"))
        assert peer.drop() == 1
        await eventually(lambda: not provider.bound, message="the drop to be noticed")
        # send() waits for the session to bind again, then goes through.
        second = await provider.send(sms("+15551230001"))
        assert provider.binds == 2
        await eventually(lambda: len(sink.statuses) >= 1)
        return first, second

    first, second = run_with(peer, scenario)
    assert first.provider_message_id != second.provider_message_id
    assert [b["status"] for b in peer.events("bind")] == [0, 0]
    assert len(peer.submits()) == 2


def test_submit_in_flight_when_the_connection_drops_is_ambiguous(peer: Peer) -> None:
    async def scenario(provider: SmppProvider, sink: FakeSink) -> None:
        pending = asyncio.create_task(provider.send(sms("+15551230999")))  # never answered
        await eventually(lambda: peer.submits())
        peer.drop()
        with pytest.raises(AmbiguousFailure, match="smpp:connection_lost"):
            await pending
        # It recovers by itself.
        await eventually(lambda: provider.binds == 2)

    run_with(peer, scenario)


# --- the rest of the Provider interface ------------------------------------------------------


def test_no_webhooks() -> None:
    provider = create(
        {"host": "127.0.0.1", "port": 1, "system_id": "x", "password": "y"},
        context(FakeSink()),
    )
    as_provider: Provider = provider  # mypy checks the adapter satisfies the Protocol
    assert as_provider.name == "smpp"
    request = WebhookRequest(method="POST", url="http://x/", headers={}, body=b"")
    with pytest.raises(SignatureError, match="SMPP has no webhooks"):
        provider.verify(request)
    assert provider.parse_inbound(request) is None
    assert provider.parse_status(request) is None
    assert provider.dedupes_by_idempotency_key is False
    provider.close()


def test_send_after_close_is_temporary(peer: Peer) -> None:
    async def scenario(provider: SmppProvider, sink: FakeSink) -> None:
        await provider.send(sms("+15551230001"))
        await provider.aclose()
        with pytest.raises(TemporaryFailure, match="smpp:closed"):
            await provider.send(sms("+15551230001"))

    run_with(peer, scenario)
    assert peer.events("unbind")
