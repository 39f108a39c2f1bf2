"""Gateway settings: one pydantic-settings class, every variable documented in the README."""

import ipaddress
import re
from datetime import timedelta, timezone
from functools import lru_cache
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from gateway import ConfigError
from schemas.topics import DLQ_TOPIC, EVENTS_TOPIC

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_OFFSET = re.compile(r"^(?:UTC)?([+-])(\d{2}):?(\d{2})$")


def _csv(value: object) -> object:
    if isinstance(value, str):
        return [p.strip() for p in value.split(",") if p.strip()]
    return value


class GatewaySettings(BaseSettings):
    """Read from ``BINDWATCH_*`` environment variables (and ``KAFKA_BOOTSTRAP_SERVERS``)."""

    model_config = SettingsConfigDict(env_prefix="BINDWATCH_", extra="ignore")

    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:19092",
        validation_alias=AliasChoices("BINDWATCH_KAFKA_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS"),
    )
    events_topic: str = EVENTS_TOPIC
    dlq_topic: str = DLQ_TOPIC
    push_tokens: SecretStr = SecretStr("")
    insecure_no_auth: bool = False
    allowed_sources: Annotated[list[Network], NoDecode] = Field(default_factory=list)
    trusted_proxies: Annotated[list[Network], NoDecode] = Field(default_factory=list)
    proxy_header: Literal["x-forwarded-for", "forwarded"] = "x-forwarded-for"
    """The one header a trusted proxy writes the client address into; the other is never read."""
    request_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    """Deadline for receiving a whole request (headers and body) from its first byte; then 408 and close."""
    idle_connection_timeout_seconds: float = Field(default=5.0, gt=0, le=300)
    """Deadline for a new connection to send its first byte; then it is closed."""
    keepalive_timeout_seconds: int = Field(default=5, ge=1, le=600)
    """How long an idle connection is kept open between complete requests (uvicorn's keep-alive)."""
    max_connections: int = Field(default=0, ge=0, le=1_000_000)
    """Open connections per process; 0 sizes it from the file-descriptor limit (limit minus a reserve)."""
    max_connections_per_source: int = Field(default=0, ge=0, le=1_000_000)
    """Open connections per peer address (trusted proxies exempt); 0 means a quarter of max_connections."""
    connection_summary_seconds: float = Field(default=60.0, ge=1, le=3600)
    """Interval of the one log line that summarises connection counters (never one line per connection)."""
    occurrence_time_zone: str = "+08:00"
    max_body_bytes: int = Field(default=65536, ge=256, le=16 * 1024 * 1024)
    invalid_push_mode: Literal["dead-letter", "reject"] = "dead-letter"
    produce_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    retry_after_seconds: int = Field(default=60, ge=1)
    shutdown_timeout_seconds: float = Field(default=10.0, gt=0)
    producer_linger_ms: int = Field(default=1, ge=0, le=1000)
    mask_numbers_in_logs: bool = True
    log_level: str = "INFO"
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = Field(default=1, ge=1, le=64)

    @field_validator("allowed_sources", "trusted_proxies", mode="before")
    @classmethod
    def _split_networks(cls, value: object) -> object:
        return _csv(value)

    @field_validator("occurrence_time_zone")
    @classmethod
    def _check_zone(cls, value: str) -> str:
        if _OFFSET.match(value.strip()) is None:
            raise ValueError("must be a UTC offset like '+08:00' or '-05:30'")
        return value.strip()

    def zone(self) -> timezone:
        m = _OFFSET.match(self.occurrence_time_zone)
        assert m is not None  # checked by the validator
        sign = -1 if m.group(1) == "-" else 1
        return timezone(sign * timedelta(hours=int(m.group(2)), minutes=int(m.group(3))))

    def tokens(self) -> list[bytes]:
        return [t.strip().encode() for t in self.push_tokens.get_secret_value().split(",") if t.strip()]

    def check(self) -> None:
        """Refuse settings that cannot work safely."""
        if self.max_connections_per_source and self.max_connections:
            if self.max_connections_per_source > self.max_connections:
                raise ConfigError(
                    "BINDWATCH_MAX_CONNECTIONS_PER_SOURCE is larger than BINDWATCH_MAX_CONNECTIONS: "
                    "lower it (or set it to 0 for a quarter of the process limit)."
                )
        if not self.tokens() and not self.insecure_no_auth:
            raise ConfigError(
                "BINDWATCH_PUSH_TOKENS is empty: set one or more comma-separated secret tokens "
                "(NXCLOUD sends one as ?token=...), or set BINDWATCH_INSECURE_NO_AUTH=true for local development only."
            )


@lru_cache
def get_settings() -> GatewaySettings:
    return GatewaySettings()
