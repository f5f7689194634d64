"""The automations pages (read-only for now: the list, one automation with its runs, one run
with its history) and the inbox's draft actions. Automations are written through the API
(``/api/v1/automations``); an editor is planned (docs/automations.md)."""

from __future__ import annotations

import json

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from textdesk.services import contacts
from textdesk.services.automations import definitions, drafts, runs
from textdesk.web.api.problem_docs import Id
from textdesk.web.deps import Config, Db
from textdesk.web.ui import Actor, Viewer, page
from textdesk.web.ui_inbox import _act

router = APIRouter(include_in_schema=False)


@router.get("/automations", response_class=HTMLResponse)
def automation_list(request: Request, db: Db, viewer: Viewer) -> Response:
    with db.read() as conn:
        found = definitions.list_automations(conn, viewer.org_id, include_archived=True)
    return page(request, "automations.html", viewer, automations=found)


@router.get("/automations/{automation_id}", response_class=HTMLResponse)
def automation_detail(request: Request, automation_id: Id, db: Db, viewer: Viewer) -> Response:
    with db.read() as conn:
        automation = definitions.get_automation(conn, viewer.org_id, automation_id)
        recent = runs.list_runs(conn, viewer.org_id, automation_id=automation_id, limit=100)
    return page(
        request,
        "automation.html",
        viewer,
        automation=automation,
        runs=recent,
        definition=json.dumps(
            {
                "trigger": automation.trigger,
                "conditions": automation.conditions,
                "steps": automation.steps,
            },
            indent=2,
            ensure_ascii=False,
        ),
    )


@router.get("/automations/runs/{run_id}", response_class=HTMLResponse)
def run_detail(request: Request, run_id: Id, db: Db, viewer: Viewer) -> Response:
    with db.read() as conn:
        run = runs.get_run(conn, viewer.org_id, run_id)
        steps = runs.history(conn, viewer.org_id, run_id)
        contact = contacts.get_contact(conn, viewer.org_id, run.contact_id)
    return page(request, "automation_run.html", viewer, run=run, history=steps, contact=contact)


@router.post("/inbox/c/{conversation_id}/drafts/{draft_id}/send", response_class=HTMLResponse)
def send_draft(
    request: Request, conversation_id: Id, draft_id: Id, db: Db, config: Config, actor: Actor
) -> Response:
    return _act(
        request,
        db,
        actor,
        conversation_id,
        lambda: drafts.send_draft(db, config, actor, draft_id, conversation_id=conversation_id),
    )


@router.post("/inbox/c/{conversation_id}/drafts/{draft_id}/discard", response_class=HTMLResponse)
def discard_draft(
    request: Request, conversation_id: Id, draft_id: Id, db: Db, actor: Actor
) -> Response:
    return _act(
        request,
        db,
        actor,
        conversation_id,
        lambda: drafts.discard_draft(db, actor, draft_id, conversation_id=conversation_id),
    )
