"""Receipt parsing, message-id normalization and the early-receipt cache (no peer needed)."""

from __future__ import annotations

import pytest

from textdesk.domain.states import MessageStatus
from textdesk.providers.smpp import codes
from textdesk.providers.smpp.pdu import DeliverSm
from textdesk.providers.smpp.receipts import (
    ReceiptTracker,
    canonical_submit_id,
    id_keys,
    normalize_receipt_id,
    parse_receipt,
)


def receipt_pdu(
    text: str, *, tlv_id: str | None = None, state: int | None = None, esm_class: int = 0x04
) -> DeliverSm:
    return DeliverSm(
        sequence=1,
        source_addr="15551234567",
        source_addr_ton=1,
        destination_addr="15550001111",
        dest_addr_ton=1,
        esm_class=esm_class,
        data_coding=0,
        short_message=text.encode("latin-1"),
        receipted_message_id=tlv_id,
        message_state=state,
    )


RECEIPT = (
    "id:1715004 sub:001 dlvrd:001 submit date:2611271200 done date:2611271201 "
    "stat:DELIVRD err:000 text:Hello there"
)


@pytest.mark.parametrize(
    ("receipt_id", "id_format", "expected"),
    [
        ("1A2B3C", "hex", "1715004"),  # receipts in hex, submit_sm_resp in decimal
        ("001a2b3c", "hex", "1715004"),
        ("1715004", "decimal", "1A2B3C"),  # receipts in decimal, submit_sm_resp in hex
        ("0001715004", "decimal", "1A2B3C"),
        ("1715004", "auto", "1715004"),  # auto: matching happens against submitted ids
        (" 1A2B3C\x00", "auto", "1A2B3C"),
        ("not-hex", "hex", "not-hex"),  # unparseable ids pass through
        ("12ab", "decimal", "12ab"),
    ],
)
def test_normalize_receipt_id(receipt_id: str, id_format: str, expected: str) -> None:
    assert normalize_receipt_id(receipt_id, id_format) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("submit_id", "id_format", "expected"),
    [
        ("0001715004", "hex", "1715004"),
        ("001a2b3c", "decimal", "1A2B3C"),
        ("1a2b3c", "auto", "1a2b3c"),
    ],
)
def test_canonical_submit_id_agrees_with_normalized_receipts(
    submit_id: str, id_format: str, expected: str
) -> None:
    assert canonical_submit_id(submit_id, id_format) == expected  # type: ignore[arg-type]


def test_id_keys_relate_hex_and_decimal_forms() -> None:
    assert id_keys("1A2B3C") & id_keys("1715004")
    assert id_keys("01a2b3c") & id_keys("1A2B3C")
    assert not id_keys("ABC-1") & id_keys("ABC-2")


def test_parse_receipt_text() -> None:
    receipt = parse_receipt(receipt_pdu(RECEIPT))
    assert receipt.ids == ("1715004",)
    assert receipt.stat == "DELIVRD"
    assert receipt.status is MessageStatus.DELIVERED
    assert receipt.fields["submit date"] == "2611271200"
    assert receipt.fields["text"] == "Hello there"


def test_tlvs_take_precedence_over_the_text() -> None:
    receipt = parse_receipt(receipt_pdu(RECEIPT, tlv_id="1A2B3C", state=5))
    assert receipt.ids == ("1A2B3C", "1715004")
    assert receipt.stat == "UNDELIV"
    assert receipt.status is MessageStatus.UNDELIVERED


@pytest.mark.parametrize(
    ("stat", "status"),
    [
        ("DELIVRD", MessageStatus.DELIVERED),
        ("UNDELIV", MessageStatus.UNDELIVERED),
        ("EXPIRED", MessageStatus.FAILED),
        ("REJECTD", MessageStatus.FAILED),
        ("DELETED", MessageStatus.FAILED),
        ("UNKNOWN", MessageStatus.FAILED),
        ("ACCEPTD", None),
        ("ENROUTE", None),
    ],
)
def test_receipt_stats(stat: str, status: MessageStatus | None) -> None:
    text = f"id:42 sub:001 dlvrd:000 submit date:2611271200 done date:2611271200 stat:{stat}"
    assert parse_receipt(receipt_pdu(text)).status is status


def test_receipt_detection_by_esm_class() -> None:
    assert receipt_pdu(RECEIPT).is_receipt
    assert receipt_pdu(RECEIPT, esm_class=0x20).is_receipt  # intermediate notification
    assert not receipt_pdu(RECEIPT, esm_class=0x00).is_receipt
    assert not receipt_pdu(RECEIPT, esm_class=0x40).is_receipt


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_auto_matches_the_other_base_against_submitted_ids() -> None:
    tracker = ReceiptTracker("auto")
    assert tracker.note_submitted("1A2B3C") == "1A2B3C"
    routed = tracker.route(parse_receipt(receipt_pdu(RECEIPT)))
    assert routed is not None and routed.report is not None
    assert routed.report.provider_message_id == "1A2B3C"
    assert routed.report.status is MessageStatus.DELIVERED


def test_auto_reports_unknown_ids_as_they_came() -> None:
    tracker = ReceiptTracker("auto")
    routed = tracker.route(parse_receipt(receipt_pdu(RECEIPT)))
    assert routed is not None and routed.report is not None
    assert routed.report.provider_message_id == "1715004"


def test_fixed_format_needs_no_memory() -> None:
    tracker = ReceiptTracker("decimal")
    routed = tracker.route(parse_receipt(receipt_pdu(RECEIPT)))
    assert routed is not None and routed.report is not None
    assert routed.report.provider_message_id == "1A2B3C"
    assert tracker.canonical("001a2b3c") == "1A2B3C"


def test_failure_report_carries_stat_and_err() -> None:
    tracker = ReceiptTracker("auto")
    text = "id:9 sub:001 dlvrd:000 submit date:2611271200 done date:2611271200 stat:UNDELIV err:034"
    routed = tracker.route(parse_receipt(receipt_pdu(text)))
    assert routed is not None and routed.report is not None
    assert routed.report.status is MessageStatus.UNDELIVERED
    assert routed.report.error_code == "smpp:UNDELIV:034"
    assert routed.report.error_message == "undeliverable"


def test_intermediate_receipts_produce_no_report() -> None:
    tracker = ReceiptTracker("auto")
    routed = tracker.route(parse_receipt(receipt_pdu("id:9 stat:ENROUTE")))
    assert routed is not None and routed.report is None
    assert tracker.early_status(["9"]) is None


def test_receipt_without_id_is_not_routed() -> None:
    assert ReceiptTracker("auto").route(parse_receipt(receipt_pdu("stat:DELIVRD"))) is None


def test_early_receipt_is_found_by_the_send_that_returns_its_id() -> None:
    clock = Clock()
    tracker = ReceiptTracker("auto", clock=clock)
    # The receipt (decimal) arrives before the submit_sm_resp (hex) was even read.
    tracker.route(parse_receipt(receipt_pdu(RECEIPT)))
    canonical = tracker.note_submitted("1A2B3C")
    early = tracker.early_status([canonical])
    assert early is not None
    assert early.status is MessageStatus.DELIVERED
    assert early.provider_message_id == "1A2B3C"
    # The cache forgets after its TTL.
    clock.now += ReceiptTracker.EARLY_TTL + 1
    assert tracker.early_status([canonical]) is None


def test_early_cache_is_bounded() -> None:
    tracker = ReceiptTracker("decimal", size=3)
    for n in range(5):
        tracker.route(parse_receipt(receipt_pdu(f"id:{n} stat:DELIVRD")))
    assert tracker.early_status(["0"]) is None
    assert tracker.early_status(["4"]) is not None


def test_concatenated_message_parts_map_to_the_last_part() -> None:
    tracker = ReceiptTracker("auto")
    ids = [tracker.note_submitted(i) for i in ("A1", "A2", "A3")]
    tracker.note_group(ids)
    delivered_part = tracker.route(parse_receipt(receipt_pdu("id:A1 stat:DELIVRD")))
    assert delivered_part is not None and delivered_part.report is None
    failed_part = tracker.route(parse_receipt(receipt_pdu("id:A2 stat:UNDELIV err:001")))
    assert failed_part is not None and failed_part.report is not None
    assert failed_part.report.provider_message_id == "A3"
    assert failed_part.report.status is MessageStatus.UNDELIVERED
    assert failed_part.report.error_message == "undeliverable (part 2)"
    last = tracker.route(parse_receipt(receipt_pdu("id:A3 stat:DELIVRD")))
    assert last is not None and last.report is not None
    assert last.report.provider_message_id == "A3"


def test_early_failure_of_any_part_wins() -> None:
    tracker = ReceiptTracker("auto")
    tracker.route(parse_receipt(receipt_pdu("id:B3 stat:DELIVRD")))
    tracker.route(parse_receipt(receipt_pdu("id:B1 stat:EXPIRED")))
    early = tracker.early_status(["B1", "B2", "B3"])
    assert early is not None
    assert early.status is MessageStatus.FAILED
    assert early.provider_message_id == "B3"


@pytest.mark.parametrize(
    ("status", "error", "code"),
    [
        (codes.ESME_RTHROTTLED, "Throttled", "smpp:0x58"),
        (codes.ESME_RMSGQFUL, "Throttled", "smpp:0x14"),
        (codes.ESME_RINVDSTADR, "InvalidNumber", "smpp:0x0B"),
        (codes.ESME_RSYSERR, "TemporaryFailure", "smpp:0x08"),
        (codes.ESME_RINVPASWD, "AuthFailure", "smpp:0x0E"),
        (0x45, "PermanentFailure", "smpp:0x45"),
        (0x62, "PermanentFailure", "smpp:0x62"),
    ],
)
def test_command_status_mapping(status: int, error: str, code: str) -> None:
    exc = codes.error_for_status(status)
    assert type(exc).__name__ == error
    assert exc.code == code


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (codes.ESME_RINVPASWD, "AuthFailure"),
        (codes.ESME_RINVSYSID, "AuthFailure"),
        (codes.ESME_RBINDFAIL, "AuthFailure"),
        (0x05, "TemporaryFailure"),  # already bound
    ],
)
def test_bind_error_mapping(status: int, error: str) -> None:
    assert type(codes.bind_error(status)).__name__ == error
