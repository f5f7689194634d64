"""A campaign's survey as the inbox shows it: the questions of the conversation's campaign with
the contact's current answers, and recording an answer from the thread.

Recording goes through :func:`textdesk.services.p2p.record_answer` (one answer per question and
contact, the option's tag and field applied in the same transaction); this module only checks
that the question belongs to the conversation's campaign, so a thread can never answer another
campaign's question for its contact.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from textdesk.services import campaign_survey, conversations, events, p2p
from textdesk.services.auth import Principal
from textdesk.services.campaign_survey import Question
from textdesk.services.errors import NotFound
from textdesk.store.db import Database
from textdesk.store.tables import survey_answers


@dataclass(frozen=True)
class Item:
    question: Question
    #: The label of the contact's current answer, None when unanswered.
    answer: str | None


def for_conversation(
    conn: Connection, org_id: int, conversation: conversations.Conversation
) -> list[Item]:
    """The questions of the conversation's campaign, in order, each with the current answer;
    empty when the conversation belongs to no campaign or the campaign asks nothing."""
    if conversation.campaign_id is None:
        return []
    questions = campaign_survey.list_questions(conn, org_id, conversation.campaign_id)
    if not questions:
        return []
    rows = conn.execute(
        sa.select(survey_answers.c.question_id, survey_answers.c.answer).where(
            survey_answers.c.org_id == org_id,
            survey_answers.c.contact_id == conversation.contact_id,
            survey_answers.c.question_id.in_([q.id for q in questions]),
        )
    )
    answers = {r.question_id: r.answer for r in rows}
    return [Item(q, answers.get(q.id)) for q in questions]


def answer(
    db: Database, principal: Principal, conversation_id: int, question_id: int, option: str
) -> p2p.Answer:
    """Record the conversation's contact's answer to one question of its campaign."""
    with db.read() as conn:
        convo = conversations.get_conversation(conn, principal.org_id, conversation_id)
        asked = convo.campaign_id is not None and any(
            q.id == question_id
            for q in campaign_survey.list_questions(conn, principal.org_id, convo.campaign_id)
        )
    if not asked:
        raise NotFound(
            f"question {question_id} is not part of this conversation's campaign",
            field="question_id",
        )
    recorded = p2p.record_answer(db, principal, question_id, convo.contact_id, option)
    # Other open tabs re-render the thread (the answer may have tagged the contact).
    with db.write() as conn:
        events.publish(
            conn,
            principal.org_id,
            "conversation.updated",
            {"conversation_id": conversation_id, "change": "survey"},
        )
    return recorded
