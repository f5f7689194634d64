"""The methods a path answers, for the ``Allow`` header of OPTIONS and of every 405.

Starlette's router stops at the first route whose path matches and names only that route's
methods, but one path is often several routes (GET, PUT, PATCH and DELETE of a contact)."""

from __future__ import annotations

from fastapi.routing import iter_route_contexts
from starlette.routing import Match, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Scope

_ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(app: ASGIApp, scope: Scope) -> list[str]:
    """Every method some route of ``app`` takes at the request's path, and OPTIONS."""
    methods = {"OPTIONS"}
    # The request's own scope may have been rewritten by a mount on the way (its root_path).
    probe: Scope = {
        "type": "http",
        "method": scope["method"],
        "path": scope["path"],
        "root_path": scope.get("app_root_path", scope.get("root_path", "")),
    }
    for route in iter_route_contexts(getattr(getattr(app, "router", None), "routes", [])):
        mount = route.original_route
        if route.methods:
            taken = set(route.methods)
        elif isinstance(mount, Mount) and isinstance(mount.app, StaticFiles):
            taken = {"GET", "HEAD"}
        else:
            continue
        match, _ = route.matches(dict(probe))
        if match is not Match.NONE:
            methods |= taken
    return sorted(methods, key=lambda m: (_ORDER.index(m) if m in _ORDER else len(_ORDER), m))
