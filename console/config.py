"""Console settings: one pydantic-settings class, every variable documented in the README."""

import re
from functools import lru_cache
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from console import ConfigError
from schemas.topics import ALERTS_TOPIC

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


@lru_cache
def get_settings() -> ConsoleSettings:
    return ConsoleSettings()
