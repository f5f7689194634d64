"""A call that may have reached the provider: re-sent under the same key where the provider
de-duplicates by it, never called "failed" when the attempts run out."""

from __future__ import annotations

import dataclasses
import time
from typing import Any, cast

from textdesk.delivery.dispatcher import Dispatcher, _Channel
from textdesk.delivery.outbox import Claimed, Failed, Retry, Unknown
from textdesk.providers.base import Provider
from textdesk.settings import Settings
from textdesk.store.db import Database


class _Dedupes:
    dedupes_by_idempotency_key = True


class _DoesNot:
    dedupes_by_idempotency_key = False


def _claimed(channel_id: int, attempts: int) -> Claimed:
    return Claimed(
        id=7,
        org_id=1,
        channel_id=channel_id,
        to="+12025550100",
        body="hi",
        attempts=attempts,
        idempotency_key="td-7",
        valid_until=None,
        segments=1,
    )


def _dispatcher(settings: Settings, db: Database) -> Dispatcher:
    dispatcher = Dispatcher(settings, db, http=cast(Any, object()), worker_id="w")
    for channel_id, provider in ((1, _Dedupes()), (2, _DoesNot())):
        dispatcher._channels[channel_id] = _Channel(
            provider=cast(Provider, provider),
            name="fake",
            sender="+12025550199",
            loaded_at=time.monotonic(),
            fingerprint="",
        )
    return dispatcher


def test_ambiguous_calls_retry_marked_where_the_provider_dedupes(
    settings: Settings, db: Database
) -> None:
    dispatcher = _dispatcher(settings, db)
    outcome = dispatcher._ambiguous(_claimed(1, 1), "fake:timeout", "read timed out")
    assert isinstance(outcome, Retry) and outcome.ambiguous
    assert isinstance(dispatcher._ambiguous(_claimed(2, 1), "fake:timeout", "x"), Unknown)


def test_the_last_ambiguous_attempt_is_unknown_not_failed(settings: Settings, db: Database) -> None:
    dispatcher = _dispatcher(settings, db)
    last = settings.delivery_max_attempts
    outcome = dispatcher._ambiguous(_claimed(1, last), "fake:timeout", "read timed out")
    assert isinstance(outcome, Unknown)
    assert outcome.detail == f"gave up after {last} attempts: read timed out"


def test_a_definite_last_failure_after_an_ambiguous_attempt_is_unknown(
    settings: Settings, db: Database
) -> None:
    """The last attempt failed for sure (a 503), but an earlier one may have reached the
    provider: the message may be out, so it is unknown; without such an attempt, failed."""
    dispatcher = _dispatcher(settings, db)
    last = settings.delivery_max_attempts
    unsure = dataclasses.replace(_claimed(1, last), maybe_sent=True)
    outcome = dispatcher._retry_or_fail(unsure, "fake:unavailable", "HTTP 503", None)
    assert isinstance(outcome, Unknown)
    assert outcome.detail == f"gave up after {last} attempts: HTTP 503"
    plain = dispatcher._retry_or_fail(_claimed(1, last), "fake:unavailable", "HTTP 503", None)
    assert isinstance(plain, Failed)
