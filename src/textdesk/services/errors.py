"""The errors services raise. The web layer turns each into ``application/problem+json``
with the matching status; the CLI prints the message. Services never import the web layer.

::

    ServiceError
    ├── Invalid          422  bad input; ``field`` names the culprit
    ├── NotFound         404  absent *or belonging to another organization* (no existence leak)
    ├── Conflict         409  unique key taken, wrong state
    ├── Unauthenticated  401  no or bad credentials
    ├── Forbidden        403  authenticated, but the role does not allow it
    └── RateLimited      429  too many attempts; ``retry_after`` seconds
"""

from __future__ import annotations


class ServiceError(Exception):
    status = 400
    title = "Bad request"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class Invalid(ServiceError):
    status = 422
    title = "Invalid input"


class NotFound(ServiceError):
    status = 404
    title = "Not found"


class Conflict(ServiceError):
    status = 409
    title = "Conflict"


class Unauthenticated(ServiceError):
    status = 401
    title = "Not authenticated"


class Forbidden(ServiceError):
    status = 403
    title = "Forbidden"


class RateLimited(ServiceError):
    status = 429
    title = "Too many requests"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after
