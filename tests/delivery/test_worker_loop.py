"""The worker's event loop: uvloop's where it is installed, asyncio's otherwise."""

from __future__ import annotations

import asyncio
import builtins
from typing import Any

import pytest

from textdesk.delivery import worker


def test_the_worker_runs_on_uvloop_where_installed() -> None:
    uvloop = pytest.importorskip("uvloop")
    loop = worker.loop_factory()()
    try:
        assert isinstance(loop, uvloop.Loop)
    finally:
        loop.close()


def test_without_uvloop_the_worker_runs_on_asyncio(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_uvloop(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "uvloop":
            raise ImportError("not installed")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_uvloop)
    assert worker.loop_factory() is asyncio.new_event_loop
