"""The circuit breaker as one worker process sees it.

::

    closed ──N consecutive failures / not bound / credentials refused──▶ open (paused_until)
      ▲                                                                    │ pause runs out
      └──────────────── the probe got an answer ◀── half-open: one probe ◀─┘
                                                    │ the probe failed too
                                                    └──▶ open again

The database holds the state every worker obeys (``channels.paused_until`` and
``pause_reason``, written by ``services/channels.py``; the probe is claimed by
``outbox.claim``). This view adds what only this process knows: its count of consecutive
failures per channel, and which channels it knows to be open, so that messages it has claimed
but not sent yet are put back (``outbox.Deferred``, no attempt used) instead of being tried
on a provider that is down.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

#: Shown when the database says a channel is paused without saying why.
UNSPECIFIED = "the channel is paused"


class Circuits:
    def __init__(self, threshold: int) -> None:
        self._threshold = max(1, threshold)
        self._failures: dict[int, int] = {}
        self._open: dict[int, tuple[datetime, str]] = {}
        # What this process changed, and when (a counter): a claim's read of the database
        # that began before a change here must not undo it (it may predate its write).
        self._version = 0
        self._changed: dict[int, int] = {}

    def version(self) -> int:
        """Take before reading the database; pass to ``note_paused`` with what was read."""
        return self._version

    def _change(self, channel_id: int) -> None:
        self._version += 1
        self._changed[channel_id] = self._version

    def open_reason(self, channel_id: int) -> str | None:
        """Why the channel may not send now, or None while it may.

        An open circuit stays open here after its pause runs out (half-open) until the probe
        answers (``closed``) or a claim reads that the channel works again (``note_paused``):
        only the probe may call the provider meanwhile."""
        entry = self._open.get(channel_id)
        return None if entry is None else entry[1]

    def opened(self, channel_id: int, until: datetime, reason: str) -> None:
        self._open[channel_id] = (until, reason)
        self._failures.pop(channel_id, None)
        self._change(channel_id)

    def note_paused(self, paused: Mapping[int, tuple[datetime, str | None]], since: int) -> None:
        """What a claim read in the database (begun at ``version() == since``): the channels
        paused now, by any worker; every other channel is not. The database is the truth,
        except for channels this process changed after the read began."""
        for channel_id in set(self._open) | set(paused):
            if self._changed.get(channel_id, 0) > since:
                continue
            if channel_id in paused:
                until, reason = paused[channel_id]
                self._open[channel_id] = (until, reason or UNSPECIFIED)
            else:
                self._open.pop(channel_id, None)

    def failure(self, channel_id: int) -> int | None:
        """Count a temporary failure; the count when it trips the breaker, else None."""
        count = self._failures.get(channel_id, 0) + 1
        if count >= self._threshold:
            self._failures.pop(channel_id, None)
            return count
        self._failures[channel_id] = count
        return None

    def success(self, channel_id: int) -> None:
        self._failures.pop(channel_id, None)

    def closed(self, channel_id: int) -> None:
        self._failures.pop(channel_id, None)
        self._open.pop(channel_id, None)
        self._change(channel_id)
