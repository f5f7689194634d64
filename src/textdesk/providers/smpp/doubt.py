"""Submits left in doubt, and the answers that come after all.

A submit_sm not answered within ``submit_timeout`` (or whose connection dropped) may have been
taken by the SMSC: ``send()`` raises ``AmbiguousFailure`` and SMPP has no idempotency key, so
the core does not send it again; the message is ``unknown``. What settles it:

* a late submit_sm_resp on the same connection (``session.Submit.answer_late``): accepted, the
  message is ``sent`` and its part id is known from then on; refused, it is ``failed``;
* the receipts of the parts the SMSC did accept (a long message whose later part went
  unanswered), and of the part in doubt once its id is known.

All of it is reported under a provisional id that ``send()`` hands the core with the failure
(``AmbiguousFailure.provider_message_id``, stored on the message), so reports find their message
though the SMSC never gave it an id in time. A submit lost with its connection gets no late
answer, and receipts for an id we never saw cannot be matched: such a message stays ``unknown``
for a person (or the stuck-message reconciliation) to settle.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable

from textdesk.providers.smpp.session import SubmitOutcome

#: (outcome, canonical id) of a submit_sm_resp.
Answered = tuple[SubmitOutcome, str]


def provisional_id() -> str:
    return f"smpp-doubt-{uuid.uuid4().hex}"


class Answer:
    """Where one submit's answer goes: to ``send()`` while it waits, to a late handler after.

    The session thread calls ``arrive``; the event loop ``stop_waiting`` and ``then``. The lock
    settles the race between the SMSC answering and ``send()`` giving up at the same moment."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting = True
        self._answer: Answered | None = None  # a real answer (the SMSC's), not a failure
        self._late: Callable[[SubmitOutcome, str], None] | None = None

    def arrive(self, outcome: SubmitOutcome, canonical: str) -> bool:
        """From the session thread. True while ``send()`` still waits for it."""
        with self._lock:
            real = outcome.failure is None
            if self._waiting:
                if real:
                    self._answer = (outcome, canonical)
                return True
            late = self._late
            if late is None:
                if real:
                    self._answer = (outcome, canonical)
                return False
        if real:
            late(outcome, canonical)
        return False

    def stop_waiting(self) -> Answered | None:
        """``send()`` gives up; returns the real answer if it came just now after all."""
        with self._lock:
            self._waiting = False
            answer, self._answer = self._answer, None
            return answer

    def then(self, late: Callable[[SubmitOutcome, str], None]) -> None:
        """What to do with an answer that comes after ``send()`` gave up."""
        with self._lock:
            answer, self._answer = self._answer, None
            if answer is None:
                self._late = late
                return
        late(*answer)
