"""Group commit for the send screen: the send actions that arrive while a transaction is being
written wait for the next one, which carries all of them (``p2p.send_many``).

Every action is still one person's key press for one contact, answered on its own (its message,
or the refusal with its reason), and only after the transaction holding it has committed. What
they share is the database's work: one locked read, one insert of messages, one commit and one
notification for the lot, where a transaction per send spent most of its time in round trips and
commits (PostgreSQL serializes the commits of notifying transactions)."""

from __future__ import annotations

from textdesk.services import p2p
from textdesk.settings import Settings
from textdesk.store.db import Database
from textdesk.web.batching import Batcher

#: Send actions carried by one transaction at most.
MAX_BATCH = 200
#: Transactions in flight at once on PostgreSQL (while one waits on the database, the next is
#: being prepared); SQLite has one writer, so one.
CONCURRENT_BATCHES = 2


class SendBatcher(Batcher[p2p.SendRequest, p2p.Sent]):
    """``submit(request)`` answers the ``Sent``, or raises the refusal."""

    def __init__(self, db: Database, settings: Settings) -> None:
        super().__init__(
            lambda batch: p2p.send_many(db, settings, batch),
            max_batch=MAX_BATCH,
            concurrent=1 if db.is_sqlite else CONCURRENT_BATCHES,
            what="send actions",
        )
