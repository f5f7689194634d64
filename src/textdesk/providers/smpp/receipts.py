"""Delivery receipts: reading them, matching their ids to ours, and the early-receipt cache.

A receipt is a deliver_sm whose esm_class says "SMSC delivery receipt". Its text follows SMPP 3.4
Appendix B (``id:... sub:... dlvrd:... submit date:... done date:... stat:DELIVRD err:...
text:...``) and many SMSCs also set the TLVs receipted_message_id (0x001E) and message_state
(0x0427). We take the TLVs when present and the text otherwise.

Message ids. Our ``provider_message_id`` is the message_id of a submit_sm_resp. Some SMSCs write
the same number in the *other* base in their receipts (hex in the response, decimal in the
receipt, or the reverse). ``receipt_id_format`` tells the adapter which:

* ``"hex"``: receipts carry hex while submit_sm_resp gives decimal. Receipt ids are converted to
  decimal, and ``send()`` reports the decimal id without leading zeros, so both sides agree
  even for messages sent before a restart.
* ``"decimal"``: receipts carry decimal while submit_sm_resp gives hex. Receipt ids become
  upper-case hex without leading zeros, and so do the ids ``send()`` reports.
* ``"auto"`` (default): ids are reported exactly as submit_sm_resp gave them. A receipt id is
  looked up among the ids this process submitted recently: first as text (ignoring case), then
  as a number in either base. When nothing matches (a message sent before a restart, say) the
  receipt's id is reported as it came.

A receipt can beat its own submit_sm_resp (the SMSC delivers before it answers, or answers on a
slower path). The adapter always pushes every receipt to the sink at once, so the core must
park a report whose id it does not know yet and apply it once ``send()`` returned that id. On
top of that the adapter keeps the last few minutes of receipts in ``ReceiptTracker``, so a
``send()`` whose id already has a receipt returns that status straight away.
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final, Generic, Literal, TypeVar

from textdesk.domain.states import MessageStatus
from textdesk.providers.base import StatusReport
from textdesk.providers.smpp import codes
from textdesk.providers.smpp.pdu import DeliverSm

IdFormat = Literal["hex", "decimal", "auto"]
ID_FORMATS: Final[tuple[IdFormat, ...]] = ("hex", "decimal", "auto")

_DECIMAL = re.compile(r"[0-9]+")
_HEX = re.compile(r"[0-9A-Fa-f]+")
# Appendix B fields. Values are single tokens except ``text:``, which runs to the end; some
# SMSCs capitalise the keys ("Text:") or write "submit_date".
_FIELDS = re.compile(
    r"\b(id|sub|dlvrd|submit[ _]date|done[ _]date|stat|err)\s*:\s*(\S*)", re.IGNORECASE
)
_TEXT = re.compile(r"\btext\s*:(.*)\Z", re.IGNORECASE | re.DOTALL)


def _clean(value: str) -> str:
    return value.strip().strip("\x00").strip()


def normalize_receipt_id(receipt_id: str, id_format: IdFormat) -> str:
    """The id a receipt carries, written the way ``canonical_submit_id`` writes submit ids.

    Ids that do not parse in the announced base come back unchanged (stripped), as does every
    id in ``"auto"`` mode (there the matching is done by ``ReceiptTracker``).
    """
    value = _clean(receipt_id)
    if id_format == "hex" and _HEX.fullmatch(value):
        return str(int(value, 16))
    if id_format == "decimal" and _DECIMAL.fullmatch(value):
        return format(int(value), "X")
    return value


def canonical_submit_id(message_id: str, id_format: IdFormat) -> str:
    """The ``provider_message_id`` we report for a submit_sm_resp's message_id."""
    value = _clean(message_id)
    if id_format == "hex" and _DECIMAL.fullmatch(value):
        return str(int(value))
    if id_format == "decimal" and _HEX.fullmatch(value):
        return format(int(value, 16), "X")
    return value


def id_keys(message_id: str) -> set[tuple[str, str | int]]:
    """Every way ``message_id`` may be written elsewhere: its text (any case) and its value read
    as decimal and as hex. Two ids denote the same message when their keys intersect."""
    value = _clean(message_id)
    keys: set[tuple[str, str | int]] = {("text", value.lower())}
    if _DECIMAL.fullmatch(value):
        keys.add(("number", int(value)))
    if _HEX.fullmatch(value):
        keys.add(("number", int(value, 16)))
    return keys


# --- reading a receipt ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Receipt:
    ids: tuple[str, ...]  # the TLV receipted_message_id first, then the text's id:, if any
    stat: str  # e.g. DELIVRD; "" when neither the text nor the TLV says
    err: str | None
    fields: dict[str, str] = field(default_factory=dict)

    @property
    def status(self) -> MessageStatus | None:
        return codes.RECEIPT_STATS.get(self.stat)


def parse_receipt(pdu: DeliverSm) -> Receipt:
    text = pdu.payload.decode("latin-1")
    fields: dict[str, str] = {}
    for key, value in _FIELDS.findall(text):
        fields.setdefault(key.lower().replace("_", " "), value)
    if match := _TEXT.search(text):
        fields["text"] = match.group(1).strip()
    ids = [i for i in (pdu.receipted_message_id, fields.get("id")) if i]
    stat = fields.get("stat", "").upper()
    if pdu.message_state is not None and pdu.message_state in codes.MESSAGE_STATES:
        stat = codes.MESSAGE_STATES[pdu.message_state]
    err = fields.get("err")
    return Receipt(ids=tuple(dict.fromkeys(ids)), stat=stat, err=err, fields=fields)


def report_for(
    receipt: Receipt, provider_message_id: str, *, part: int | None = None
) -> StatusReport:
    status = receipt.status
    assert status is not None
    error_code = error_message = None
    if status is not MessageStatus.DELIVERED:
        error_code = f"smpp:{receipt.stat}"
        if receipt.err and receipt.err.strip("0"):
            error_code += f":{receipt.err}"
        error_message = codes.STAT_DESCRIPTIONS.get(receipt.stat, receipt.stat.lower())
        if part is not None:
            error_message += f" (part {part})"
    raw: dict[str, object] = {"stat": receipt.stat, "ids": list(receipt.ids), **receipt.fields}
    if part is not None:
        raw["part"] = part
    return StatusReport(
        provider_message_id=provider_message_id,
        status=status,
        error_code=error_code,
        error_message=error_message,
        raw=raw,
    )


# --- the tracker -----------------------------------------------------------------------------


_K = TypeVar("_K")
_V = TypeVar("_V")


class _TtlMap(Generic[_K, _V]):
    """An insertion-ordered map that forgets entries after ``ttl`` seconds or past ``size``."""

    def __init__(self, ttl: float, size: int, clock: Callable[[], float]) -> None:
        self._ttl = ttl
        self._size = size
        self._clock = clock
        self._items: OrderedDict[_K, tuple[float, _V]] = OrderedDict()

    def put(self, key: _K, value: _V) -> None:
        self._items.pop(key, None)
        self._items[key] = (self._clock() + self._ttl, value)
        self._expire()

    def get(self, key: _K) -> _V | None:
        self._expire()
        item = self._items.get(key)
        return None if item is None else item[1]

    def _expire(self) -> None:
        now = self._clock()
        while self._items:
            key, (deadline, _) = next(iter(self._items.items()))
            if deadline > now and len(self._items) <= self._size:
                break
            del self._items[key]


@dataclass
class _Group:
    """The parts of one concatenated message; the last part's id is the message's id.

    A message left in doubt (a submit unanswered in time) has a provisional ``main_id`` instead
    (the core stores it as the message's provider id): receipts for the parts the SMSC did
    accept, and for the part in doubt once a late answer gives its id, report under it."""

    main_id: str
    part_ids: tuple[str, ...]
    in_doubt: bool = False


@dataclass(frozen=True)
class Routed:
    """What to do with a receipt: push ``report`` (if any), and remember it as ``receipt_id``."""

    receipt_id: str
    report: StatusReport | None


class ReceiptTracker:
    """Shared by the session thread (receipts, submit responses) and the event loop (``send``),
    hence the lock. Everything it holds is bounded in time and size."""

    #: How long a receipt waits for a ``send()`` that has not returned its id yet.
    EARLY_TTL: Final = 300.0
    #: How long we remember ids we submitted (for ``auto`` matching) and the parts of
    #: concatenated messages. Receipts later than this are still pushed, under their own id.
    SUBMITTED_TTL: Final = 3 * 24 * 3600.0

    def __init__(
        self,
        id_format: IdFormat,
        *,
        clock: Callable[[], float] = time.monotonic,
        size: int = 100_000,
    ) -> None:
        self.id_format = id_format
        self._lock = threading.Lock()
        self._early: _TtlMap[tuple[str, str | int], tuple[str, Receipt]] = _TtlMap(
            self.EARLY_TTL, size, clock
        )
        self._submitted: _TtlMap[tuple[str, str | int], str] = _TtlMap(
            self.SUBMITTED_TTL, size, clock
        )
        # part id -> (its message, its part number, whether its receipt decides "delivered")
        self._groups: _TtlMap[str, tuple[_Group, int, bool]] = _TtlMap(
            self.SUBMITTED_TTL, size, clock
        )

    def _keys(self, message_id: str) -> set[tuple[str, str | int]]:
        # Fixed formats make ids canonical, so only the exact text matches; "auto" also
        # compares numbers.
        if self.id_format == "auto":
            return id_keys(message_id)
        return {("text", _clean(message_id).lower())}

    def canonical(self, message_id: str) -> str:
        return canonical_submit_id(message_id, self.id_format)

    def note_submitted(self, message_id: str) -> str:
        """Record a submit_sm_resp's id (from the session thread, before ``send()`` sees it, so
        a receipt right behind it is matched). Returns the canonical id."""
        canonical = self.canonical(message_id)
        if self.id_format == "auto":
            with self._lock:
                # A numeric reading shared with an older id now points at this one: receipts
                # mostly concern recent messages. ``_resolve`` tries exact text first anyway.
                for key in id_keys(canonical):
                    self._submitted.put(key, canonical)
        return canonical

    def note_group(self, part_ids: Iterable[str]) -> None:
        """Remember the (canonical) ids of a concatenated message's parts, main id last."""
        ids = tuple(part_ids)
        group = _Group(main_id=ids[-1], part_ids=ids)
        with self._lock:
            for number, part_id in enumerate(ids[:-1], start=1):
                self._groups.put(part_id, (group, number, False))

    def note_doubt(self, main_id: str, accepted_ids: Iterable[str]) -> None:
        """A message left in doubt under the provisional ``main_id``: the receipts of the parts
        the SMSC accepted (``accepted_ids``, in order) report under it."""
        group = _Group(main_id=main_id, part_ids=tuple(accepted_ids), in_doubt=True)
        with self._lock:
            for number, part_id in enumerate(group.part_ids, start=1):
                self._groups.put(part_id, (group, number, False))

    def early_doubt(self, main_id: str, accepted_ids: Iterable[str]) -> StatusReport | None:
        """What receipts that came before the doubt was noted (while ``send()`` waited for a
        later part) say about the message in doubt ``main_id``: a failed part fails it, a
        delivered one makes it sent."""
        ids = tuple(accepted_ids)
        if not ids:
            return None
        with self._lock:
            found: list[tuple[int, Receipt]] = []
            for number, part_id in enumerate(ids, start=1):
                for key in self._keys(part_id):
                    hit = self._early.get(key)
                    if hit is not None:
                        found.append((number, hit[1]))
                        break
        for number, receipt in found:
            if receipt.status is not MessageStatus.DELIVERED:
                return report_for(receipt, main_id, part=number)
        if found:
            return StatusReport(main_id, MessageStatus.SENT)
        return None

    def note_late(self, main_id: str, part_id: str, number: int, *, last: bool) -> None:
        """The part in doubt was accepted after all, as ``part_id``: its receipt reports under
        ``main_id``, and decides "delivered" when it was the message's ``last`` part."""
        group = _Group(main_id=main_id, part_ids=(part_id,), in_doubt=True)
        with self._lock:
            self._groups.put(part_id, (group, number, last))

    def _resolve(self, receipt: Receipt) -> str:
        if self.id_format != "auto":
            return normalize_receipt_id(receipt.ids[0], self.id_format)
        for wanted_text in (True, False):
            for raw in receipt.ids:
                for key in id_keys(raw):
                    if (key[0] == "text") != wanted_text:
                        continue
                    if (found := self._submitted.get(key)) is not None:
                        return found
        return _clean(receipt.ids[0])

    def route(self, receipt: Receipt) -> Routed | None:
        """Decide the report for a receipt; ``None`` for one that carries no id."""
        if not receipt.ids:
            return None
        with self._lock:
            receipt_id = self._resolve(receipt)
            status = receipt.status
            if status is None:
                return Routed(receipt_id, None)
            seen_as = {receipt_id, *receipt.ids} if self.id_format == "auto" else {receipt_id}
            for raw in seen_as:
                for key in self._keys(raw):
                    self._early.put(key, (receipt_id, receipt))
            member = self._groups.get(receipt_id)
        if member is None:
            return Routed(receipt_id, report_for(receipt, receipt_id))
        group, number, decides = member
        if decides:
            return Routed(receipt_id, report_for(receipt, group.main_id))
        if status is MessageStatus.DELIVERED:
            if group.in_doubt:
                # A part of a message in doubt arrived: the SMSC has the message, it is sent.
                return Routed(receipt_id, StatusReport(group.main_id, MessageStatus.SENT))
            # The last part's receipt decides "delivered"; an earlier part's adds nothing.
            return Routed(receipt_id, None)
        return Routed(receipt_id, report_for(receipt, group.main_id, part=number))

    def early_status(self, part_ids: Iterable[str]) -> StatusReport | None:
        """A final report already received for a message whose parts got ``part_ids`` (main id
        last): a failure of any part, else the main part's own receipt."""
        ids = tuple(part_ids)
        main = ids[-1]
        with self._lock:
            found: dict[str, Receipt] = {}
            for part_id in ids:
                for key in self._keys(part_id):
                    hit = self._early.get(key)
                    if hit is not None:
                        found[part_id] = hit[1]
                        break
        for number, part_id in enumerate(ids, start=1):
            receipt = found.get(part_id)
            if receipt is not None and receipt.status is not MessageStatus.DELIVERED:
                part = number if len(ids) > 1 else None
                return report_for(receipt, main, part=part)
        if main in found:
            return report_for(found[main], main)
        return None
