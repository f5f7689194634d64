"""The fake carrier's knobs, read from ``TEXTDESK_SIMULATOR_*`` environment variables.

Every field is listed in ``docs/providers.md`` (section *Simulator*); a test keeps it so.
Defaults are deterministic (everything delivered, no random failures, no random replies) so a
fresh demo and the tests behave the same every time; the suffix table in ``script.py`` scripts
the exceptions.
"""

from __future__ import annotations

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class SimulatorConfig(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TEXTDESK_SIMULATOR_", extra="ignore")

    api_key: str | None = Field(
        default=None,
        description="If set, the only API key the carrier accepts; otherwise any non-empty key.",
    )
    webhook_secret: str = Field(
        # A fake carrier's shared secret: it protects nothing real, so a default is fine.
        default="simulator-secret",
        min_length=1,
        description="HMAC-SHA256 key that signs delivery reports and inbound messages.",
    )
    latency_ms: float = Field(default=200, ge=0, description="Mean API response time.")
    latency_jitter_ms: float = Field(
        default=50, ge=0, description="Response time varies uniformly by up to this much."
    )
    dlr_delay_ms: float = Field(
        default=500, ge=0, description="Delay between acceptance and the delivery report."
    )
    reply_delay_ms: float = Field(
        default=2000, ge=0, description="Delay between a delivered report and a customer reply."
    )
    delivered_rate: float = Field(
        default=1.0, ge=0.0, le=1.0, description="Share reported delivered."
    )
    undelivered_rate: float = Field(
        default=0.0, ge=0.0, le=1.0, description="Share reported undelivered; the rest are failed."
    )
    temporary_failure_rate: float = Field(
        default=0.0, ge=0.0, le=1.0, description="Share of sends answered 503 (retryable)."
    )
    permanent_failure_rate: float = Field(
        default=0.0, ge=0.0, le=1.0, description="Share of sends answered 400 (not retryable)."
    )
    reply_rate: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="Share of delivered messages that get a random reply.",
    )
    seed: int | None = Field(
        default=None, description="Seeds the random choices (outcomes, replies, jitter)."
    )
    hang_ms: float = Field(
        default=30_000,
        ge=0,
        description="How long a send to a number ending 0504 waits before answering.",
    )
    callback_retries: int = Field(
        default=3, ge=0, le=20, description="Retries of a callback refused or answered 5xx."
    )
    callback_backoff_ms: float = Field(
        default=500, ge=0, description="First retry delay; doubles on each further retry."
    )
    callback_timeout_s: float = Field(
        default=5.0, gt=0, description="Timeout of one callback request."
    )

    @model_validator(mode="after")
    def _rates_add_up(self) -> SimulatorConfig:
        if self.delivered_rate + self.undelivered_rate > 1.0 + 1e-9:
            raise ValueError(
                "TEXTDESK_SIMULATOR_DELIVERED_RATE + TEXTDESK_SIMULATOR_UNDELIVERED_RATE "
                "must not exceed 1"
            )
        if self.temporary_failure_rate + self.permanent_failure_rate > 1.0 + 1e-9:
            raise ValueError(
                "TEXTDESK_SIMULATOR_TEMPORARY_FAILURE_RATE + "
                "TEXTDESK_SIMULATOR_PERMANENT_FAILURE_RATE must not exceed 1"
            )
        return self
