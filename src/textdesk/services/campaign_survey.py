"""A campaign's survey questions and its own canned responses (administration side).

A question's options are ``[{"label", "tag"?, "field"?, "value"?}]``: recording an answer (the
send screen and the inbox do that) tags the contact and/or sets one of the org's custom fields.
Options are validated here, when they are written, so an answer can never carry a tag or a
field value that the contact could not hold.

Canned responses of a campaign are rows of ``canned_responses`` with ``campaign_id`` set; the
org-wide ones (``campaign_id`` NULL) belong to the inbox.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from textdesk.domain.roles import Role
from textdesk.services import audit, canned
from textdesk.services.audit import RequestInfo
from textdesk.services.auth import Principal
from textdesk.services.campaigns import ARCHIVED, get_campaign
from textdesk.services.canned import CannedResponse
from textdesk.services.errors import Conflict, Invalid, NotFound
from textdesk.store.db import Database
from textdesk.store.tables import canned_responses, survey_answers, survey_questions, utcnow

MAX_OPTIONS = 10
MAX_QUESTIONS = 20
#: Positions order the questions; the column is a 32-bit integer.
MAX_POSITION = 10_000
_TAG = re.compile(r"^[a-z0-9][a-z0-9_:-]{0,39}$")


@dataclass(frozen=True)
class Question:
    id: int
    campaign_id: int
    position: int
    prompt: str
    options: list[dict[str, Any]]

    @classmethod
    def from_row(cls, row: Any) -> Question:
        m = row._mapping
        return cls(**{f: m[f] for f in cls.__dataclass_fields__})


def _editable(conn: Connection, principal: Principal, campaign_id: int) -> None:
    principal.require(Role.ADMIN)
    campaign = get_campaign(conn, principal.org_id, campaign_id, lock=True)
    if campaign.status == ARCHIVED:
        raise Conflict("an archived campaign cannot change", field="status")


# --- survey questions ---------------------------------------------------------------------------


def validate_options(conn: Connection, org_id: int, options: list[Any]) -> list[dict[str, Any]]:
    """Normalized options; each error names ``options[i].<key>``."""
    from textdesk.services.custom_fields import coerce_value, field_types

    if not 2 <= len(options) <= MAX_OPTIONS:
        raise Invalid(f"a question needs 2 to {MAX_OPTIONS} options", field="options")
    types = field_types(conn, org_id)
    seen: set[str] = set()
    clean: list[dict[str, Any]] = []
    for i, option in enumerate(options):
        where = f"options[{i}]"
        if not isinstance(option, dict):
            raise Invalid(f"{where} must be an object with a label", field=where)
        unknown = set(option) - {"label", "tag", "field", "value"}
        if unknown:
            raise Invalid(f"{where} has an unknown key {sorted(unknown)[0]!r}", field=where)
        label = str(option.get("label") or "").strip()
        if not label:
            raise Invalid(f"{where}.label is empty", field=f"{where}.label")
        if len(label) > 200:
            raise Invalid(f"{where}.label is longer than 200 characters", field=f"{where}.label")
        if label.lower() in seen:
            raise Invalid(f"{where}.label {label!r} is used twice", field=f"{where}.label")
        seen.add(label.lower())
        out: dict[str, Any] = {"label": label}
        tag = str(option.get("tag") or "").strip().lower()
        if tag:
            if not _TAG.match(tag):
                raise Invalid(
                    f"{where}.tag {tag!r}: use lowercase letters, digits, '-', '_' or ':'",
                    field=f"{where}.tag",
                )
            out["tag"] = tag
        key = str(option.get("field") or "").strip()
        if key:
            if key.startswith("fields."):
                key = key.removeprefix("fields.")
            if key not in types:
                raise Invalid(f"{where}.field: no custom field {key!r}", field=f"{where}.field")
            value = coerce_value(types[key], option.get("value"), key=key)
            if value is None:
                raise Invalid(f"{where}.value is needed with a field", field=f"{where}.value")
            out["field"], out["value"] = key, value
        elif option.get("value") not in (None, ""):
            raise Invalid(f"{where}.value needs a field to set", field=f"{where}.field")
        clean.append(out)
    return clean


def list_questions(conn: Connection, org_id: int, campaign_id: int) -> list[Question]:
    rows = conn.execute(
        sa.select(survey_questions)
        .where(survey_questions.c.org_id == org_id, survey_questions.c.campaign_id == campaign_id)
        .order_by(survey_questions.c.position, survey_questions.c.id)
    )
    return [Question.from_row(r) for r in rows]


def _question(conn: Connection, org_id: int, campaign_id: int, question_id: int) -> Question:
    row = conn.execute(
        sa.select(survey_questions).where(
            survey_questions.c.id == question_id,
            survey_questions.c.org_id == org_id,
            survey_questions.c.campaign_id == campaign_id,
        )
    ).first()
    if row is None:
        raise NotFound(f"question {question_id} not found")
    return Question.from_row(row)


def _prompt(prompt: str) -> str:
    text = prompt.strip()
    if not text:
        raise Invalid("the question's prompt is empty", field="prompt")
    if len(text) > 500:
        raise Invalid("prompt is longer than 500 characters", field="prompt")
    return text


def add_question(
    db: Database,
    principal: Principal,
    campaign_id: int,
    *,
    prompt: str,
    options: list[Any],
    request: RequestInfo | None = None,
) -> Question:
    with db.write() as conn:
        _editable(conn, principal, campaign_id)
        text = _prompt(prompt)
        clean = validate_options(conn, principal.org_id, options)
        existing = list_questions(conn, principal.org_id, campaign_id)
        if len(existing) >= MAX_QUESTIONS:
            raise Invalid(f"a campaign has at most {MAX_QUESTIONS} questions", field="prompt")
        position = max((q.position for q in existing), default=-1) + 1
        question_id = conn.execute(
            survey_questions.insert()
            .values(
                org_id=principal.org_id,
                campaign_id=campaign_id,
                position=position,
                prompt=text,
                options=clean,
                created_at=utcnow(),
            )
            .returning(survey_questions.c.id)
        ).scalar_one()
        audit.record(
            conn,
            org_id=principal.org_id,
            actor=principal.actor,
            action="campaign.question.add",
            target=f"campaign:{campaign_id}",
            request=request,
            detail={"question_id": question_id},
        )
        return _question(conn, principal.org_id, campaign_id, question_id)


def update_question(
    db: Database,
    principal: Principal,
    campaign_id: int,
    question_id: int,
    *,
    prompt: str | None = None,
    options: list[Any] | None = None,
    position: int | None = None,
) -> Question:
    with db.write() as conn:
        _editable(conn, principal, campaign_id)
        current = _question(conn, principal.org_id, campaign_id, question_id)
        values: dict[str, Any] = {}
        if prompt is not None:
            values["prompt"] = _prompt(prompt)
        if options is not None:
            clean = validate_options(conn, principal.org_id, options)
            answered = set(
                conn.execute(
                    sa.select(survey_answers.c.answer)
                    .where(survey_answers.c.question_id == question_id)
                    .distinct()
                ).scalars()
            )
            gone = answered - {o["label"] for o in clean}
            if gone:
                # Answers store the label; dropping an answered option would orphan them.
                raise Conflict(
                    f"option {sorted(gone)[0]!r} already has answers and cannot be removed",
                    field="options",
                )
            values["options"] = clean
        if position is not None:
            if not 0 <= position <= MAX_POSITION:
                raise Invalid(f"position must be between 0 and {MAX_POSITION}", field="position")
            values["position"] = position
        if values:
            conn.execute(
                sa.update(survey_questions)
                .where(survey_questions.c.id == current.id)
                .values(**values)
            )
        return _question(conn, principal.org_id, campaign_id, question_id)


def delete_question(
    db: Database,
    principal: Principal,
    campaign_id: int,
    question_id: int,
    *,
    request: RequestInfo | None = None,
) -> None:
    with db.write() as conn:
        _editable(conn, principal, campaign_id)
        _question(conn, principal.org_id, campaign_id, question_id)
        answers = conn.execute(
            sa.select(sa.func.count())
            .select_from(survey_answers)
            .where(survey_answers.c.question_id == question_id)
        ).scalar_one()
        if answers:
            raise Conflict(
                f"the question has {answers} answers; archive the campaign instead",
                field="question_id",
            )
        conn.execute(sa.delete(survey_questions).where(survey_questions.c.id == question_id))
        audit.record(
            conn,
            org_id=principal.org_id,
            actor=principal.actor,
            action="campaign.question.delete",
            target=f"campaign:{campaign_id}",
            request=request,
            detail={"question_id": question_id},
        )


# --- canned responses of a campaign -------------------------------------------------------------


def list_canned(conn: Connection, org_id: int, campaign_id: int) -> list[CannedResponse]:
    rows = conn.execute(
        sa.select(canned_responses)
        .where(canned_responses.c.org_id == org_id, canned_responses.c.campaign_id == campaign_id)
        .order_by(canned_responses.c.title, canned_responses.c.id)
    )
    return [CannedResponse.from_row(r) for r in rows]


def _canned(conn: Connection, org_id: int, campaign_id: int, response_id: int) -> CannedResponse:
    row = conn.execute(
        sa.select(canned_responses).where(
            canned_responses.c.id == response_id,
            canned_responses.c.org_id == org_id,
            canned_responses.c.campaign_id == campaign_id,
        )
    ).first()
    if row is None:
        raise NotFound(f"canned response {response_id} not found")
    return CannedResponse.from_row(row)


def add_canned(
    db: Database,
    principal: Principal,
    campaign_id: int,
    *,
    title: str,
    body: str,
    request: RequestInfo | None = None,
) -> CannedResponse:
    with db.write() as conn:
        _editable(conn, principal, campaign_id)
        created = canned.insert(conn, principal, title=title, body=body, campaign_id=campaign_id)
        _audit_canned(conn, principal, "campaign.canned.add", campaign_id, created.id, request)
        return created


def update_canned(
    db: Database,
    principal: Principal,
    campaign_id: int,
    response_id: int,
    *,
    title: str | None = None,
    body: str | None = None,
) -> CannedResponse:
    with db.write() as conn:
        _editable(conn, principal, campaign_id)
        current = _canned(conn, principal.org_id, campaign_id, response_id)
        return canned.change(
            conn,
            principal,
            response_id,
            title=current.title if title is None else title,
            body=current.body if body is None else body,
            campaign_id=campaign_id,
        )


def delete_canned(
    db: Database,
    principal: Principal,
    campaign_id: int,
    response_id: int,
    *,
    request: RequestInfo | None = None,
) -> None:
    with db.write() as conn:
        _editable(conn, principal, campaign_id)
        _canned(conn, principal.org_id, campaign_id, response_id)
        canned.remove(conn, principal, response_id)
        _audit_canned(conn, principal, "campaign.canned.delete", campaign_id, response_id, request)


def _audit_canned(
    conn: Connection,
    principal: Principal,
    action: str,
    campaign_id: int,
    response_id: int,
    request: RequestInfo | None,
) -> None:
    audit.record(
        conn,
        org_id=principal.org_id,
        actor=principal.actor,
        action=action,
        target=f"campaign:{campaign_id}",
        request=request,
        detail={"canned_response_id": response_id},
    )
