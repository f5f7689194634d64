"""The REST API under /api/v1. Handlers parse, authorize and call one service function."""

from __future__ import annotations

from fastapi import APIRouter

from textdesk.web.api import (
    accounts,
    campaigns,
    channels,
    consent,
    contacts,
    custom_fields,
    messages,
    organization,
    preview,
)


def router() -> APIRouter:
    api = APIRouter(prefix="/api/v1")
    for module in (
        accounts,
        organization,
        channels,
        contacts,
        custom_fields,
        consent,
        messages,
        campaigns,
        preview,
    ):
        api.include_router(module.router)
    return api
