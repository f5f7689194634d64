"""Start-up objects are frozen out of the cyclic collector, once per process, by the web app and
by the worker."""

from __future__ import annotations

import gc
from typing import Any

import pytest
from fastapi.testclient import TestClient

from textdesk import runtime
from textdesk.delivery import worker
from textdesk.settings import Settings
from textdesk.store.db import Database
from textdesk.web import app as web_app


def test_start_up_objects_are_frozen_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(runtime, "_frozen", False)
    monkeypatch.setattr(gc, "freeze", lambda: calls.append("freeze"))
    monkeypatch.setattr(gc, "collect", lambda *a: calls.append("collect") or 0)
    assert runtime.freeze_startup_objects() is True
    assert runtime.freeze_startup_objects() is False  # a second app must not freeze garbage
    assert calls == ["collect", "freeze"]


def test_the_web_app_and_the_worker_freeze_at_start(
    settings: Settings, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(web_app, "freeze_startup_objects", lambda: calls.append("web"))
    monkeypatch.setattr(worker, "freeze_startup_objects", lambda: calls.append("worker"))

    async def no_work(*_args: Any) -> None:
        calls.append("served")

    monkeypatch.setattr(worker, "serve_worker", no_work)
    with TestClient(web_app.create_app(settings, db)) as client:
        assert client.get("/healthz").status_code == 200
    worker.run_worker(settings, db)
    assert calls == ["web", "worker", "served"]
