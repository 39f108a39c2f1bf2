"""Console settings: one pydantic-settings class, every variable documented in the README."""

import re
from functools import lru_cache
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from console import ConfigError
from schemas.topics import ALERTS_TOPIC, OVERVIEW_TOPIC

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


def _csv(value: object) -> object:
    if isinstance(value, str):
        return [p.strip() for p in value.split(",") if p.strip()]
    return value


class ConsoleSettings(BaseSettings):
    """Read from ``BINDWATCH_*`` environment variables (and ``KAFKA_BOOTSTRAP_SERVERS``)."""

    model_config = SettingsConfigDict(env_prefix="BINDWATCH_", extra="ignore")

    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:19092",
        validation_alias=AliasChoices("BINDWATCH_KAFKA_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS"),
    )
    alerts_topic: str = ALERTS_TOPIC
    overview_topic: str = OVERVIEW_TOPIC
    """The workers' overview document (read for the operators' page; the page says so while it does not exist)."""
    console_group_id: str = "bindwatch-console"
    """Consumer group the console commits its offsets to (the view is always rebuilt from the beginning)."""
    alertmanager_urls: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Base URLs (``http://alertmanager:9093``); every alert goes to each one, as Prometheus does for an HA pair."""
    alertmanager_resend_seconds: float = Field(default=60.0, ge=0.5, le=3600)
    alertmanager_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    alertmanager_retries: int = Field(default=3, ge=0, le=10)
    alertmanager_batch_size: int = Field(default=1000, ge=1, le=100_000)
    alertmanager_extra_labels: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    """Static labels on every alert, ``team=telephony,env=prod``."""
    notify_mask_numbers: bool = False
    """Mask caller and DID in labels, annotations and generatorURL (the real number is what on-call dials)."""
    runbook_url: str = ""
    """``runbook_url`` annotation; ``{rule}`` is replaced by the rule name."""
    worker_query_url: str = "http://127.0.0.1:6066"
    """Base URL of the stream workers' query API: ``generatorURL`` is ``<this>/v1/callers/<n>`` or ``/v1/dids/<n>``."""
    worker_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    """How long the operators' page waits for the worker query API before it says the workers are unreachable."""
    console_tokens: SecretStr = SecretStr("")
    """Secrets that open the operators' page (comma-separated; any one signs in, as the gateway's push tokens)."""
    console_insecure_no_auth: bool = False
    """Open the operators' page (phone numbers) to anyone who reaches the port: local development only."""
    console_max_failed_signins: int = Field(default=10, ge=1, le=10_000)
    """Failed sign-ins allowed per source address per minute; past it the console answers 429."""
    worker_url: str = ""
    """Where the operators' page asks the workers about a number (any worker; they route). Empty: the
    ``worker_query_url``. Differs from it when the alert links must work from people's browsers (compose)."""
    mask_numbers_in_logs: bool = True
    log_level: str = "INFO"
    host: str = "127.0.0.1"
    port: int = Field(default=8081, ge=1, le=65535)
    shutdown_timeout_seconds: float = Field(default=10.0, gt=0)

    @field_validator("alertmanager_urls", mode="before")
    @classmethod
    def _split_urls(cls, value: object) -> object:
        return _csv(value)

    @field_validator("alertmanager_urls")
    @classmethod
    def _check_urls(cls, value: list[str]) -> list[str]:
        for url in value:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError(f"{url!r} is not an http(s) base URL like http://alertmanager:9093")
        return [u.rstrip("/") for u in value]

    @field_validator("alertmanager_extra_labels", mode="before")
    @classmethod
    def _split_labels(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        labels: dict[str, str] = {}
        for item in value.split(","):
            if not item.strip():
                continue
            name, sep, label_value = item.partition("=")
            if not sep:
                raise ValueError(f"{item!r} is not name=value")
            labels[name.strip()] = label_value.strip()
        return labels

    @field_validator("alertmanager_extra_labels")
    @classmethod
    def _check_labels(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not _LABEL_NAME.match(name):
                raise ValueError(f"label name {name!r} must match {_LABEL_NAME.pattern}")
        return value

    def check(self) -> None:
        """Refuse settings that cannot work."""
        if not self.alerts_topic:
            raise ConfigError("BINDWATCH_ALERTS_TOPIC is empty: set it to the alerts topic (bindwatch.alerts.v1).")
        if not self.tokens() and not self.console_insecure_no_auth:
            raise ConfigError(
                "BINDWATCH_CONSOLE_TOKENS is empty: the operators' page shows phone numbers, so set one or more "
                "comma-separated secrets, or BINDWATCH_CONSOLE_INSECURE_NO_AUTH=true for local development only."
            )

    def tokens(self) -> list[bytes]:
        return [t.strip().encode() for t in self.console_tokens.get_secret_value().split(",") if t.strip()]


@lru_cache
def get_settings() -> ConsoleSettings:
    return ConsoleSettings()
