"""Inbound messages (deliver_sm that is not a receipt): decoding and reassembly of parts.

A long message from a phone arrives as several deliver_sm, each marked either with a UDH
concatenation element (8-bit reference, IEI 00, or 16-bit, IEI 08) or with the sar_msg_ref_num /
sar_total_segments / sar_segment_seqnum TLVs. Parts may come in any order and interleaved with
other messages; we collect them per (sender, recipient, reference, total) and join the raw user
data before decoding, so an escape or surrogate pair split by the sender's phone still decodes.

A set that stays incomplete for ``timeout`` seconds is delivered with the parts that did arrive
(``raw["missing_parts"]`` lists the others): a customer's partial reply is more useful to an
agent than nothing. Every part was already acknowledged to the SMSC, so parts held here are lost
if the process stops before the set completes.

Ids. A message's ``provider_message_id`` is derived from what identifies its deliver_sm
(``mo_key``), so an SMSC delivering one again (our answer was lost, or came after its timeout)
gets the same id, and the core, which stores one inbound message per id, keeps one. A part
delivered again after its set was complete is dropped here (the set's part keys are kept for
``timeout`` seconds).
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from textdesk.providers.base import InboundSms
from textdesk.providers.smpp import codes, text
from textdesk.providers.smpp.pdu import DeliverSm

#: TON 1 (international): the address is a number in E.164 without its "+".
TON_INTERNATIONAL = 1


def address_to_e164(address: str, ton: int) -> str:
    """An SMPP address as we store numbers: ``+`` and digits for international numbers; other
    addresses (national numbers, short codes, alphanumeric senders) as they came."""
    address = address.strip()
    if ton == TON_INTERNATIONAL and address.isdigit():
        return "+" + address
    return address


def mo_key(pdu: DeliverSm, connection: str, day: date) -> str:
    """What stays the same when the SMSC delivers this deliver_sm again, and differs for another
    message, in order of trust:

    1. the SMSC's own id for it, when it sends one (``receipted_message_id`` on a message from a
       phone: not in SMPP 3.4 for MO, but some SMSCs set it);
    2. the sender's message reference (``user_message_reference``: the handset's TP-MR, when the
       SMSC passes it on) with the content and the UTC day (the reference counts to 255 and
       starts again, so a "Yes" sent weeks later must not be taken for a repeat);
    3. else the connection and the PDU's sequence number with the content: the SMSC sending the
       same PDU again on the same connection (after its response timeout). A re-delivery on a
       new connection carries a new sequence number and is not recognized (SMPP gives nothing
       to tell it from the same text sent twice)."""
    content = hashlib.sha256()
    fields = (
        pdu.source_addr,
        pdu.source_addr_ton,
        pdu.destination_addr,
        pdu.dest_addr_ton,
        pdu.esm_class,
        pdu.data_coding,
        pdu.sar_msg_ref_num,
        pdu.sar_segment_seqnum,
    )
    content.update("\x00".join(str(f) for f in fields).encode())
    content.update(pdu.payload)
    if pdu.receipted_message_id:
        basis = f"smsc:{pdu.receipted_message_id}:{pdu.source_addr}:{pdu.sar_segment_seqnum}"
    elif pdu.user_message_reference is not None:
        basis = f"mr:{pdu.user_message_reference}:{day.isoformat()}:{content.hexdigest()}"
    else:
        basis = f"seq:{connection}:{pdu.sequence}:{content.hexdigest()}"
    return hashlib.sha256(basis.encode()).hexdigest()[:32]


def _message_id(part_keys: list[str]) -> str:
    if len(part_keys) == 1:
        return f"smpp-mo-{part_keys[0]}"
    joined = hashlib.sha256("|".join(part_keys).encode()).hexdigest()[:32]
    return f"smpp-mo-{joined}"


@dataclass
class _PartSet:
    sender: str
    recipient: str
    total: int
    data_coding: int
    started: float
    parts: dict[int, bytes] = field(default_factory=dict)
    keys: dict[int, str] = field(default_factory=dict)


class Reassembler:
    def __init__(
        self,
        timeout: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        max_sets: int = 10_000,
    ) -> None:
        self._timeout = timeout
        self._clock = clock
        self._now = now
        self._max_sets = max_sets
        self._sets: dict[tuple[str, str, int, int], _PartSet] = {}
        # Part keys of sets delivered in the last ``timeout`` seconds -> when delivered.
        self._delivered_parts: OrderedDict[str, float] = OrderedDict()

    @property
    def pending(self) -> int:
        return len(self._sets)

    def add(self, pdu: DeliverSm, key: str | None = None) -> InboundSms | None:
        """The message ``pdu`` completes, or ``None`` while parts are missing (or when it is
        a part of a message already delivered). ``key``: ``mo_key`` of the PDU (none: a key
        of its own, never taken for another's)."""
        key = key or uuid.uuid4().hex
        sender = address_to_e164(pdu.source_addr, pdu.source_addr_ton)
        recipient = address_to_e164(pdu.destination_addr, pdu.dest_addr_ton)
        data = pdu.payload
        concat: text.Concat | None = None
        if pdu.esm_class & codes.ESM_UDHI:
            try:
                udh, data = text.split_udh(data)
            except ValueError:
                udh = b""
            concat = text.parse_concat(udh)
        elif pdu.sar_msg_ref_num is not None and pdu.sar_total_segments is not None:
            concat = text.Concat(
                reference=pdu.sar_msg_ref_num,
                total=pdu.sar_total_segments,
                sequence=pdu.sar_segment_seqnum or 0,
            )
        if concat is None or concat.total <= 1 or not 1 <= concat.sequence <= concat.total:
            return self._message(sender, recipient, pdu.data_coding, [data], [key], parts=1)

        self._forget_delivered()
        if key in self._delivered_parts:
            return None  # delivered again after its message was complete: it is in already
        set_key = (sender, recipient, concat.reference, concat.total)
        part_set = self._sets.get(set_key)
        if part_set is None:
            if len(self._sets) >= self._max_sets:
                # A flood of never-completed sets must not grow memory without bound.
                oldest = min(self._sets, key=lambda k: self._sets[k].started)
                del self._sets[oldest]
            part_set = _PartSet(sender, recipient, concat.total, pdu.data_coding, self._clock())
            self._sets[set_key] = part_set
        part_set.parts[concat.sequence] = data
        part_set.keys[concat.sequence] = key
        if len(part_set.parts) < part_set.total:
            return None
        del self._sets[set_key]
        numbers = range(1, part_set.total + 1)
        return self._message(
            sender,
            recipient,
            part_set.data_coding,
            [part_set.parts[i] for i in numbers],
            [part_set.keys[i] for i in numbers],
            parts=part_set.total,
        )

    def _forget_delivered(self) -> None:
        deadline = self._clock() - self._timeout
        while self._delivered_parts:
            key, at = next(iter(self._delivered_parts.items()))
            if at > deadline and len(self._delivered_parts) <= 10 * self._max_sets:
                break
            del self._delivered_parts[key]

    def expire(self) -> list[InboundSms]:
        """Sets older than the timeout, delivered with the parts that arrived."""
        deadline = self._clock() - self._timeout
        expired = [key for key, s in self._sets.items() if s.started <= deadline]
        messages: list[InboundSms] = []
        for key in expired:
            part_set = self._sets.pop(key)
            numbers = sorted(part_set.parts)
            missing = [i for i in range(1, part_set.total + 1) if i not in part_set.parts]
            messages.append(
                self._message(
                    part_set.sender,
                    part_set.recipient,
                    part_set.data_coding,
                    [part_set.parts[i] for i in numbers],
                    [part_set.keys[i] for i in numbers],
                    parts=part_set.total,
                    missing=missing,
                )
            )
        return messages

    def _message(
        self,
        sender: str,
        recipient: str,
        data_coding: int,
        chunks: list[bytes],
        keys: list[str],
        *,
        parts: int,
        missing: list[int] | None = None,
    ) -> InboundSms:
        raw: dict[str, object] = {"data_coding": data_coding, "parts": parts}
        if missing:
            raw["missing_parts"] = missing
        if parts > 1:
            now = self._clock()
            for key in keys:
                self._delivered_parts[key] = now
        return InboundSms(
            provider_message_id=_message_id(keys),
            sender=sender,
            recipient=recipient,
            body=text.decode(b"".join(chunks), data_coding),
            received_at=self._now(),
            raw=raw,
        )
