"""PDU encoding and decoding, the only module that touches ``smpplib``.

smpplib's ``Client`` owns a socket and reads with a timeout that can cut a PDU in half, so we
keep the socket, the framing and the sequence numbers ourselves (``session.py``) and use only its
PDU classes to turn fields into bytes and back. smpplib is untyped: its objects stay in here and
callers get frozen dataclasses.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Final

from smpplib import smpp as _smpp

from textdesk.providers.smpp import codes

HEADER: Final = struct.Struct(">LLLL")
HEADER_SIZE: Final = HEADER.size
#: Larger PDUs are a broken stream, not a message: SMPP short messages are at most 254 octets
#: and message_payload at most 64 KiB.
MAX_PDU_SIZE: Final = 70_000

_NAMES: dict[int, str] = {
    codes.GENERIC_NACK: "generic_nack",
    codes.SUBMIT_SM_RESP: "submit_sm_resp",
    codes.DELIVER_SM: "deliver_sm",
    codes.DELIVER_SM_RESP: "deliver_sm_resp",
    codes.UNBIND: "unbind",
    codes.UNBIND_RESP: "unbind_resp",
    codes.BIND_TRANSCEIVER_RESP: "bind_transceiver_resp",
    codes.ENQUIRE_LINK: "enquire_link",
    codes.ENQUIRE_LINK_RESP: "enquire_link_resp",
}


class PduError(ValueError):
    """Bytes that are not a PDU we can read."""


class _Sequence:
    """What smpplib asks its ``client`` for. We set each PDU's sequence number ourselves."""

    sequence = 0

    def next_sequence(self) -> int:
        return 0


_CLIENT = _Sequence()


@dataclass(frozen=True)
class Header:
    length: int
    command_id: int
    status: int
    sequence: int

    @property
    def is_response(self) -> bool:
        return bool(self.command_id & codes.RESPONSE_BIT)


@dataclass(frozen=True)
class SubmitSm:
    source_addr: str
    source_addr_ton: int
    source_addr_npi: int
    destination_addr: str
    dest_addr_ton: int
    dest_addr_npi: int
    esm_class: int
    data_coding: int
    short_message: bytes
    registered_delivery: int = codes.REGISTERED_DELIVERY_FINAL
    validity_period: str = ""
    service_type: str = ""


@dataclass(frozen=True)
class DeliverSm:
    sequence: int
    source_addr: str
    source_addr_ton: int
    destination_addr: str
    dest_addr_ton: int
    esm_class: int
    data_coding: int
    short_message: bytes
    message_payload: bytes | None = None
    receipted_message_id: str | None = None
    message_state: int | None = None
    sar_msg_ref_num: int | None = None
    sar_total_segments: int | None = None
    sar_segment_seqnum: int | None = None
    user_message_reference: int | None = None

    @property
    def payload(self) -> bytes:
        """The user data: short_message, or message_payload when short_message is empty."""
        return self.short_message or self.message_payload or b""

    @property
    def is_receipt(self) -> bool:
        kind = self.esm_class & codes.ESM_TYPE_MASK
        return kind in (codes.ESM_TYPE_RECEIPT, codes.ESM_TYPE_INTERMEDIATE)


def parse_header(data: bytes) -> Header:
    if len(data) < HEADER_SIZE:
        raise PduError(f"a PDU header is {HEADER_SIZE} octets, got {len(data)}")
    length, command_id, status, sequence = HEADER.unpack_from(data)
    if not HEADER_SIZE <= length <= MAX_PDU_SIZE:
        raise PduError(f"implausible command_length {length}")
    return Header(length, command_id, status, sequence)


def command_name(command_id: int) -> str:
    return _NAMES.get(command_id, f"0x{command_id:08X}")


def _generate(name: str, sequence: int, **fields: Any) -> bytes:
    pdu = _smpp.make_pdu(name, client=_CLIENT, **fields)
    pdu.sequence = sequence
    raw = pdu.generate()
    assert isinstance(raw, bytes)
    return raw


def bind_transceiver(sequence: int, *, system_id: str, password: str, system_type: str) -> bytes:
    return _generate(
        "bind_transceiver",
        sequence,
        system_id=system_id,
        password=password,
        system_type=system_type,
        interface_version=0x34,
    )


def submit_sm(sequence: int, message: SubmitSm) -> bytes:
    return _generate(
        "submit_sm",
        sequence,
        service_type=message.service_type,
        source_addr_ton=message.source_addr_ton,
        source_addr_npi=message.source_addr_npi,
        source_addr=message.source_addr,
        dest_addr_ton=message.dest_addr_ton,
        dest_addr_npi=message.dest_addr_npi,
        destination_addr=message.destination_addr,
        esm_class=message.esm_class,
        registered_delivery=message.registered_delivery,
        validity_period=message.validity_period,
        data_coding=message.data_coding,
        short_message=message.short_message,
    )


def with_sequence(raw: bytes, sequence: int) -> bytes:
    """``raw`` (encoded with any sequence number) renumbered: PDUs are encoded where errors can
    be reported to the caller, and numbered by the session thread when it writes them."""
    return raw[:12] + sequence.to_bytes(4, "big") + raw[HEADER_SIZE:]


def request(command_id: int, sequence: int) -> bytes:
    """A request with an empty body: enquire_link or unbind."""
    return HEADER.pack(HEADER_SIZE, command_id, codes.ESME_ROK, sequence)


def response(command_id: int, sequence: int, status: int = codes.ESME_ROK) -> bytes:
    """The answer to a request we received. deliver_sm_resp carries an empty message_id (one
    NUL octet, 4.6.2); the others have no body."""
    body = b"\x00" if command_id == codes.DELIVER_SM_RESP else b""
    return HEADER.pack(HEADER_SIZE + len(body), command_id, status, sequence) + body


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("latin-1").rstrip("\x00")
    return str(value)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) else None


def _parse(data: bytes) -> Any:
    try:
        return _smpp.parse_pdu(data, client=_CLIENT, allow_unknown_opt_params=True)
    except Exception as exc:  # smpplib raises struct.error, IndexError, its own errors...
        raise PduError(f"cannot parse PDU: {exc}") from exc


def message_id(data: bytes) -> str:
    """The message_id of a submit_sm_resp (empty when the SMSC sent none, as on errors)."""
    if len(data) <= HEADER_SIZE:
        return ""
    return _text(_parse(data).message_id).strip()


def deliver_sm(data: bytes) -> DeliverSm:
    pdu = _parse(data)
    payload = pdu.message_payload
    return DeliverSm(
        sequence=int(pdu.sequence),
        source_addr=_text(pdu.source_addr),
        source_addr_ton=_int(pdu.source_addr_ton) or 0,
        destination_addr=_text(pdu.destination_addr),
        dest_addr_ton=_int(pdu.dest_addr_ton) or 0,
        esm_class=_int(pdu.esm_class) or 0,
        data_coding=_int(pdu.data_coding) or 0,
        short_message=bytes(pdu.short_message or b""),
        message_payload=bytes(payload) if payload else None,
        receipted_message_id=_text(pdu.receipted_message_id).strip() or None,
        message_state=_int(pdu.message_state),
        sar_msg_ref_num=_int(pdu.sar_msg_ref_num),
        sar_total_segments=_int(pdu.sar_total_segments),
        sar_segment_seqnum=_int(pdu.sar_segment_seqnum),
        user_message_reference=_int(getattr(pdu, "user_message_reference", None)),
    )
