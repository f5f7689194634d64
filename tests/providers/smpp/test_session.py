"""Session pieces that need no peer: reconnect backoff and PDU framing."""

from __future__ import annotations

import pytest

from textdesk.providers.smpp import codes, pdu
from textdesk.providers.smpp.session import (
    BACKOFF_INITIAL,
    BACKOFF_MAX,
    Submit,
    SubmitFailure,
    SubmitOutcome,
    _Frames,
    backoff_delay,
)

MESSAGE = pdu.submit_sm(
    0,
    pdu.SubmitSm(
        source_addr="1",
        source_addr_ton=1,
        source_addr_npi=1,
        destination_addr="2",
        dest_addr_ton=1,
        dest_addr_npi=1,
        esm_class=0,
        data_coding=0,
        short_message=b"hi",
    ),
)


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    assert backoff_delay(0, lambda: 1.0) == BACKOFF_INITIAL
    assert backoff_delay(0, lambda: 0.0) == BACKOFF_INITIAL / 2
    assert backoff_delay(3, lambda: 1.0) == BACKOFF_INITIAL * 8
    assert backoff_delay(30, lambda: 1.0) == BACKOFF_MAX
    assert backoff_delay(10_000, lambda: 0.0) == BACKOFF_MAX / 2
    delays = {backoff_delay(2) for _ in range(50)}
    assert len(delays) > 1 and all(1.0 <= d <= 2.0 for d in delays)


def test_frames_reassemble_pdus_cut_anywhere() -> None:
    stream = (
        pdu.request(codes.ENQUIRE_LINK, 1)
        + pdu.response(codes.DELIVER_SM_RESP, 2)
        + pdu.request(codes.UNBIND, 3)
    )
    for cut in range(1, len(stream)):
        frames = _Frames()
        got = frames.feed(stream[:cut]) + frames.feed(stream[cut:])
        assert [pdu.parse_header(f).sequence for f in got] == [1, 2, 3]


def test_implausible_length_is_a_broken_stream() -> None:
    with pytest.raises(pdu.PduError):
        _Frames().feed(b"\xff\xff\xff\xff" + b"\x00" * 12)


def test_a_cancelled_submit_is_never_written() -> None:
    outcomes: list[SubmitOutcome] = []
    queued = Submit(MESSAGE, outcomes.append)
    assert queued.cancel() is False, "not written yet"
    assert queued.claim() is False, "so the session thread skips it"

    written = Submit(MESSAGE, outcomes.append)
    assert written.claim() is True
    assert written.cancel() is True, "too late: the SMSC may have it"

    written.finish(SubmitOutcome(failure=SubmitFailure.TIMEOUT))
    written.finish(SubmitOutcome(message_id="late"))
    assert outcomes == [SubmitOutcome(failure=SubmitFailure.TIMEOUT)], "answered once"


def test_which_failures_may_have_reached_the_smsc() -> None:
    assert {f for f in SubmitFailure if f.may_have_been_sent} == {
        SubmitFailure.CONNECTION_LOST,
        SubmitFailure.TIMEOUT,
    }


def test_pdus_are_renumbered_for_the_wire() -> None:
    header = pdu.parse_header(pdu.with_sequence(MESSAGE, 0x01020304))
    assert (header.command_id, header.sequence, header.length) == (
        codes.SUBMIT_SM,
        0x01020304,
        len(MESSAGE),
    )
