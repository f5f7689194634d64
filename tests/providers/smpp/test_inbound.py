"""Reassembly of inbound concatenated messages and the channel config (no peer needed)."""

from __future__ import annotations

import dataclasses
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from textdesk.providers.smpp import config, validate_config
from textdesk.providers.smpp.inbound import Reassembler, address_to_e164, mo_key
from textdesk.providers.smpp.pdu import DeliverSm
from textdesk.providers.smpp.text import gsm_encode


def mo(
    data: bytes,
    *,
    esm_class: int = 0,
    data_coding: int = 0,
    source: str = "15557654321",
    **tlvs: int,
) -> DeliverSm:
    return DeliverSm(
        sequence=1,
        source_addr=source,
        source_addr_ton=1,
        destination_addr="15550001111",
        dest_addr_ton=1,
        esm_class=esm_class,
        data_coding=data_coding,
        short_message=data,
        **tlvs,  # type: ignore[arg-type]
    )


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_single_message() -> None:
    sms = Reassembler(60).add(mo(gsm_encode("Hi {there}")))
    assert sms is not None
    assert sms.body == "Hi {there}"
    assert sms.sender == "+15557654321"
    assert sms.recipient == "+15550001111"
    assert sms.provider_message_id.startswith("smpp-mo-")


def test_udh_parts_out_of_order_and_interleaved() -> None:
    reassembler = Reassembler(60)
    chunks = ["Hello, this ", "is a long ", "reply."]
    udh = [bytes([5, 0, 3, 0x33, 3, n]) for n in (1, 2, 3)]
    order = [2, 0, 1]
    assert reassembler.add(mo(udh[order[0]] + gsm_encode(chunks[order[0]]), esm_class=0x40)) is None
    # Another sender's single message in between.
    other = reassembler.add(mo(gsm_encode("STOP"), source="15550009999"))
    assert other is not None and other.body == "STOP"
    assert reassembler.add(mo(udh[order[1]] + gsm_encode(chunks[order[1]]), esm_class=0x40)) is None
    sms = reassembler.add(mo(udh[order[2]] + gsm_encode(chunks[order[2]]), esm_class=0x40))
    assert sms is not None
    assert sms.body == "".join(chunks)
    assert sms.raw["parts"] == 3
    assert reassembler.pending == 0


def test_16_bit_reference_and_a_surrogate_pair_split_across_parts() -> None:
    data = "ok 😀!".encode("utf-16-be")
    first, second = data[:8], data[8:]  # cuts the emoji's surrogate pair in half
    reassembler = Reassembler(60)
    udh = [bytes([6, 8, 4, 0x01, 0x02, 2, n]) for n in (1, 2)]
    assert reassembler.add(mo(udh[1] + second, esm_class=0x40, data_coding=8)) is None
    sms = reassembler.add(mo(udh[0] + first, esm_class=0x40, data_coding=8))
    assert sms is not None and sms.body == "ok 😀!"


def test_sar_tlvs() -> None:
    reassembler = Reassembler(60)
    assert (
        reassembler.add(
            mo(b"world", sar_msg_ref_num=700, sar_total_segments=2, sar_segment_seqnum=2)
        )
        is None
    )
    sms = reassembler.add(
        mo(b"hello ", sar_msg_ref_num=700, sar_total_segments=2, sar_segment_seqnum=1)
    )
    assert sms is not None and sms.body == "hello world"


def test_incomplete_set_is_delivered_after_the_timeout() -> None:
    clock = Clock()
    reassembler = Reassembler(30, clock=clock)
    assert reassembler.add(mo(bytes([5, 0, 3, 9, 3, 1]) + b"first ", esm_class=0x40)) is None
    assert reassembler.add(mo(bytes([5, 0, 3, 9, 3, 3]) + b"third", esm_class=0x40)) is None
    clock.now = 29
    assert reassembler.expire() == []
    clock.now = 31
    (sms,) = reassembler.expire()
    assert sms.body == "first third"
    assert sms.raw["missing_parts"] == [2]
    assert reassembler.pending == 0


DAY = date(2026, 5, 14)


def test_a_pdu_sent_again_on_its_connection_has_the_same_key() -> None:
    again = dataclasses.replace(mo(b"Yes"), sequence=1)
    assert mo_key(mo(b"Yes"), "conn-1", DAY) == mo_key(again, "conn-1", DAY)
    later = dataclasses.replace(mo(b"Yes"), sequence=2)
    assert mo_key(later, "conn-1", DAY) != mo_key(mo(b"Yes"), "conn-1", DAY), "a second Yes"
    assert mo_key(mo(b"Yes"), "conn-2", DAY) != mo_key(mo(b"Yes"), "conn-1", DAY)
    assert mo_key(mo(b"No"), "conn-1", DAY) != mo_key(mo(b"Yes"), "conn-1", DAY)


def test_the_smscs_id_or_the_senders_reference_identify_a_message_across_connections() -> None:
    by_id = dataclasses.replace(mo(b"Yes"), receipted_message_id="MO-77", sequence=9)
    assert mo_key(by_id, "conn-1", DAY) == mo_key(
        dataclasses.replace(by_id, sequence=12), "conn-2", DAY
    )
    by_ref = dataclasses.replace(mo(b"Yes"), user_message_reference=42)
    assert mo_key(by_ref, "conn-1", DAY) == mo_key(
        dataclasses.replace(by_ref, sequence=5), "conn-2", DAY
    )
    # The reference counts to 255 and starts again: on another day it is another message.
    assert mo_key(by_ref, "conn-1", DAY) != mo_key(by_ref, "conn-1", date(2026, 6, 1))


def test_ids_follow_the_keys_and_a_part_sent_again_after_its_set_is_dropped() -> None:
    single = Reassembler(60).add(mo(b"Yes"), "k1")
    assert single is not None and single.provider_message_id == "smpp-mo-k1"
    clock = Clock()
    reassembler = Reassembler(60, clock=clock)
    parts = [mo(bytes([5, 0, 3, 7, 2, n]) + b"half ", esm_class=0x40) for n in (1, 2)]
    assert reassembler.add(parts[0], "p1") is None
    whole = reassembler.add(parts[1], "p2")
    assert whole is not None and whole.provider_message_id.startswith("smpp-mo-")
    assert reassembler.add(parts[1], "p2") is None and reassembler.pending == 0
    clock.now = 61  # long after: the same key is news again (the core still has its id)
    assert reassembler.add(parts[1], "p2") is None and reassembler.pending == 1


def test_addresses() -> None:
    assert address_to_e164("15551234567", 1) == "+15551234567"
    assert address_to_e164("12345", 3) == "12345"
    assert address_to_e164("ACME", 5) == "ACME"


# --- config --------------------------------------------------------------------------------------

BASE = {"host": "smsc.example", "port": 2775, "system_id": "acme", "password": "pw"}


def test_defaults() -> None:
    cleaned = validate_config(BASE)
    assert cleaned == {
        **BASE,
        "system_type": "",
        "source_ton": 1,
        "source_npi": 1,
        "dest_ton": 1,
        "dest_npi": 1,
        "receipt_id_format": "auto",
        "enquire_link_interval": 30.0,
        "submit_timeout": 10.0,
        "window": 10,
        "reassembly_timeout": 300.0,
    }


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"host": None}, "host"),
        ({"port": 0}, "port"),
        ({"port": "x"}, "port"),
        ({"system_id": "a" * 16}, "system_id"),
        ({"password": "123456789"}, "password"),
        ({"password": None}, "password"),
        ({"receipt_id_format": "octal"}, "receipt_id_format"),
        ({"window": 0}, "window"),
        ({"submit_timeout": -1}, "submit_timeout"),
        ({"enquire_link_interval": "soon"}, "enquire_link_interval"),
        ({"source_ton": 300}, "source_ton"),
        ({"pasword": "x"}, "pasword"),
    ],
)
def test_bad_config_names_the_key(change: dict[str, Any], key: str) -> None:
    values = {k: v for k, v in {**BASE, **change}.items() if v is not None}
    with pytest.raises(ValueError, match=repr(key)):
        validate_config(values)


def test_password_is_never_echoed() -> None:
    with pytest.raises(ValueError) as info:
        validate_config({**BASE, "password": "longsecret!"})
    assert "longsecret" not in str(info.value)


def test_every_config_key_is_documented() -> None:
    docs = (Path(__file__).resolve().parents[3] / "docs" / "providers.md").read_text()
    section = docs.split("\n## SMPP\n", 1)[1].split("\n## ", 1)[0]
    missing = [key for key in sorted(config.KEYS) if f"`{key}`" not in section]
    assert not missing, f"document in docs/providers.md, section SMPP: {missing}"
