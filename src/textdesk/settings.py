"""One typed settings object, read from ``TEXTDESK_*`` environment variables and ``.env``.

Every field here must be documented in ``docs/configuration.md``; ``tests/test_docs.py`` fails
otherwise. Secrets can also come from a file: ``TEXTDESK_SECRET_KEY_FILE=/run/secrets/key``.
"""

from __future__ import annotations

import ipaddress
import os
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

#: The shipped default secret. Fine for a laptop demo, refused in production mode.
DEFAULT_SECRET_KEY = "change-me-this-is-not-a-secret"  # noqa: S105 - a placeholder, refused in prod

_FILE_SUFFIX = "_FILE"


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"
    TEST = "test"


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


class SettingsError(RuntimeError):
    """The configuration is unusable; the message says which variable and why."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TEXTDESK_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    env: Environment = Field(
        default=Environment.DEVELOPMENT, description="development, production or test."
    )
    database_url: str = Field(
        default="sqlite:///./var/textdesk.db",
        description="SQLAlchemy URL: sqlite:///path or postgresql+psycopg://user@host/db.",
    )
    database_pool_size: int = Field(
        default=10, ge=1, le=200, description="PostgreSQL connection pool size per process."
    )
    secret_key: str = Field(
        default=DEFAULT_SECRET_KEY,
        min_length=16,
        description="Signs session cookies and CSRF tokens. Required in production.",
    )
    base_url: str = Field(
        default="http://127.0.0.1:8000",
        description="Public URL of this server; used in links and provider webhook URLs.",
    )
    host: str = Field(default="127.0.0.1", description="Address `textdesk serve` binds.")
    port: int = Field(default=8000, ge=1, le=65535, description="Port `textdesk serve` binds.")
    web_workers: int = Field(
        default=1, ge=1, le=64, description="Processes `textdesk serve` runs (uvicorn workers)."
    )
    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR.")
    log_format: LogFormat = Field(default=LogFormat.TEXT, description="text or json.")
    session_max_age: int = Field(
        default=60 * 60 * 12, ge=60, description="Seconds a UI login session stays valid."
    )
    login_max_attempts: int = Field(
        default=5, ge=1, description="Failed logins allowed per client address per window."
    )
    login_account_max_attempts: int = Field(
        default=20, ge=1, description="Failed logins allowed per e-mail, all addresses together."
    )
    login_window_seconds: int = Field(
        default=15 * 60, ge=1, description="Window over which failed logins are counted."
    )
    # NoDecode: the variable is a comma-separated list, not the JSON pydantic-settings expects.
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Peers (IPs or CIDRs) whose X-Forwarded-For names the client; none by default.",
    )
    embedded_worker: bool = Field(
        default=True, description="Run the delivery worker inside `textdesk serve`."
    )
    simulator_enabled: bool = Field(
        default=True, description="Serve the built-in carrier simulator under /simulator."
    )
    delivery_concurrency: int = Field(
        default=128, ge=1, le=5000, description="Provider calls in flight per worker process."
    )
    delivery_batch_size: int = Field(
        default=200, ge=1, le=5000, description="Most messages one claim takes."
    )
    delivery_lease_seconds: int = Field(
        default=60, ge=5, description="How long a claimed message stays a worker's own."
    )
    delivery_max_attempts: int = Field(
        default=5, ge=1, le=50, description="Sends tried before a retryable error fails."
    )
    delivery_poll_seconds: float = Field(
        default=1.0, gt=0, le=60, description="Longest idle wait between outbox checks."
    )
    provider_timeout_seconds: float = Field(
        default=15.0, gt=0, le=120, description="Timeout of one provider call."
    )
    message_validity_hours: float = Field(
        default=10.0, gt=0, le=72, description="A message not sent within this window expires."
    )
    contact_spacing_seconds: int = Field(
        default=0, ge=0, description="Least time between two messages to the same contact."
    )
    circuit_breaker_failures: int = Field(
        default=10, ge=1, description="Consecutive provider failures that pause a channel."
    )
    circuit_breaker_pause_seconds: int = Field(
        default=60, ge=1, description="How long a tripped channel stays paused."
    )
    reconcile_seconds: float = Field(
        default=60,
        ge=0,
        description="How often a worker asks providers about `unknown` messages (0: never).",
    )
    sent_reconcile_after_seconds: float = Field(
        default=86400,
        ge=0,
        description="A `sent` message with no delivery report this long is looked up or marked "
        "`unknown` (0: never).",
    )
    data_dir: Path = Field(
        default=Path("./data"), description="Where uploaded files (CSV imports) are kept."
    )
    import_max_bytes: int = Field(
        default=500 * 1024 * 1024, ge=1024, description="Largest CSV file an upload may be."
    )

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        upper = value.upper()
        if upper not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError(f"unknown log level {value!r}; use DEBUG, INFO, WARNING or ERROR")
        return upper

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _proxies(cls, value: Any) -> list[str]:
        entries = value.split(",") if isinstance(value, str) else list(value)
        proxies = []
        for entry in (str(e).strip() for e in entries):
            if not entry:
                continue
            try:
                # Written out the way the proxy-header middleware compares them: an entry it
                # could not parse would silently trust nobody.
                if "/" in entry:
                    proxies.append(str(ipaddress.ip_network(entry, strict=False)))
                else:
                    proxies.append(str(ipaddress.ip_address(entry)))
            except ValueError:
                raise ValueError(
                    f"TEXTDESK_TRUSTED_PROXIES: {entry!r} is not an IP address or CIDR network"
                ) from None
        return proxies

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"base URL must start with http:// or https://, got {value!r}")
        return value.rstrip("/")

    @model_validator(mode="before")
    @classmethod
    def _read_secret_files(cls, data: Any) -> Any:
        """``TEXTDESK_<NAME>_FILE`` points at a file whose content is the value (Docker secrets)."""
        if not isinstance(data, dict):
            return data
        for key, path in os.environ.items():
            if key.startswith("TEXTDESK_") and key.endswith(_FILE_SUFFIX):
                field = key[len("TEXTDESK_") : -len(_FILE_SUFFIX)].lower()
                if field in cls.model_fields and field not in data:
                    try:
                        data[field] = Path(path).read_text(encoding="utf-8").strip()
                    except OSError as exc:
                        raise ValueError(f"{key}: cannot read {path}: {exc.strerror}") from exc
        return data

    @model_validator(mode="after")
    def _refuse_placeholder_secret(self) -> Settings:
        if self.env is Environment.PRODUCTION and self.secret_key == DEFAULT_SECRET_KEY:
            raise ValueError(
                "TEXTDESK_SECRET_KEY is the shipped placeholder; set a random value of at least "
                "16 characters before running in production"
            )
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def secure_cookies(self) -> bool:
        return self.base_url.startswith("https://")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (cached; tests build their own ``Settings``)."""
    return Settings()
