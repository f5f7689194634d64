"""Send later: a conversation's scheduled messages, and cancelling one before it goes."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from textdesk.services import conversations, scheduled
from textdesk.web.api.messages import MessageOut
from textdesk.web.api.problem_docs import Id, problems
from textdesk.web.deps import ApiCaller, Db

router = APIRouter(tags=["messages"])


@router.get(
    "/conversations/{conversation_id}/scheduled",
    response_model=list[MessageOut],
    responses=problems(401, 404, 422),
)
def list_scheduled(conversation_id: Id, caller: ApiCaller, db: Db) -> Any:
    """Messages waiting for their `send_at`, soonest first."""
    with db.read() as conn:
        conversations.get_conversation(conn, caller.org_id, conversation_id)
        return scheduled.scheduled(conn, caller.org_id, conversation_id)


@router.post(
    "/messages/{message_id}/cancel",
    response_model=MessageOut,
    responses=problems(401, 403, 404, 409, 422),
)
def cancel_message(message_id: Id, caller: ApiCaller, db: Db) -> Any:
    """Cancel a message no worker has handed to a provider yet (409 once it has gone, or was
    tried): it becomes `blocked` with `gate_code` `cancelled`."""
    return scheduled.cancel(db, caller, message_id)
