"""The REST API under /api/v1. Handlers parse, authorize and call one service function."""

from __future__ import annotations

from fastapi import APIRouter

from textdesk.web import openapi
from textdesk.web.api import (
    accounts,
    automations,
    campaigns,
    canned,
    channels,
    consent,
    contacts,
    conversations,
    custom_fields,
    events,
    exports,
    imports,
    messages,
    organization,
    p2p,
    preview,
    scheduled,
    search,
    segments,
)


def router() -> APIRouter:
    api = APIRouter(prefix="/api/v1")
    for module in (
        accounts,
        organization,
        channels,
        contacts,
        custom_fields,
        imports,
        consent,
        messages,
        conversations,
        canned,
        campaigns,
        p2p,
        preview,
        search,
        segments,
        exports,
        events,
        automations,
        scheduled,
    ):
        # Before including: an included router is resolved lazily from the routes it has.
        openapi.document_problems(module.router)
        api.include_router(module.router)
    return api
