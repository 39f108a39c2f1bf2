"""Stream worker settings: one pydantic-settings class, every variable documented in the README."""

from functools import lru_cache

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.alerts import Rule
from schemas.topics import ALERTS_TOPIC, BY_DID_TOPIC, DLQ_TOPIC, EVENTS_TOPIC
from stream.rules import Policy, RuleSpec


class StreamSettings(BaseSettings):
    """Read from ``BINDWATCH_*`` environment variables (and ``KAFKA_BOOTSTRAP_SERVERS``)."""

    model_config = SettingsConfigDict(env_prefix="BINDWATCH_", extra="ignore")

    kafka_bootstrap_servers: str = Field(
        default="127.0.0.1:19092",
        validation_alias=AliasChoices("BINDWATCH_KAFKA_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS"),
    )
    app_id: str = "bindwatch-stream"
    events_topic: str = EVENTS_TOPIC
    dlq_topic: str = DLQ_TOPIC
    by_did_topic: str = BY_DID_TOPIC
    alerts_topic: str = ALERTS_TOPIC
    ticks_topic_suffix: str = "ticks"
    partitions: int = Field(default=8, ge=1, le=1024)
    replication_factor: int = Field(default=1, ge=1)
    min_insync_replicas: int = Field(default=0, ge=0)
    """``min.insync.replicas`` of every topic bindwatch creates; 0 means 2 when the replication factor is 3 or
    more (one broker may be down and a write is still on two), else 1."""
    standby_replicas: int = Field(default=0, ge=0, le=3)
    """Faust ``table_standby_replicas``: other workers keep a warm copy of each table partition by reading its
    changelog, so a worker lost with its disk is replaced without a full restore."""
    store: str = "rocksdb://"
    data_dir: str = "./var/stream"
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    canonical_url: str | None = None
    tick_seconds: float = Field(default=5.0, gt=0)
    gc_batch: int = Field(default=20000, ge=100)
    commit_interval_seconds: float = Field(default=2.0, gt=0)
    batch_size: int = Field(default=500, ge=1, le=10000)
    """Events the caller stage takes at once: each caller in a batch is read and written once, and the batch
    goes to the DID stage as one record per partition."""
    batch_wait_ms: int = Field(default=20, ge=1, le=5000)
    """How long the caller stage waits to fill a batch: at low rates, the latency it adds to an alert."""
    producer_linger_ms: int = Field(default=10, ge=0, le=1000)
    """How long the worker's producer waits to fill a batch. Every event makes at least three records (the
    caller changelog, the by-DID forward and the DID changelog); at 0 each tends to go out as its own produce
    request, which costs the worker and the broker far more than the few milliseconds of waiting."""
    group_instance_id: str | None = None
    """Static group membership (KIP-345): a restarted worker with the same id gets its partitions back at
    once instead of after a rebalance. Set it to the pod name in a StatefulSet. A static member does not
    leave the group on shutdown, so its partitions move only after ``session_timeout_seconds``."""
    session_timeout_seconds: float = Field(default=30.0, ge=6, le=300)

    caller_repeat_threshold: int = Field(default=3, ge=1)
    caller_repeat_window_seconds: int = Field(default=600, ge=1)
    did_hot_threshold: int = Field(default=5, ge=1)
    did_hot_window_seconds: int = Field(default=600, ge=1)
    pair_repeat_threshold: int = Field(default=3, ge=1)
    pair_repeat_window_seconds: int = Field(default=1800, ge=1)
    caller_scan_threshold: int = Field(default=5, ge=1)
    caller_scan_window_seconds: int = Field(default=600, ge=1)
    critical_factor: int = Field(default=10, ge=2)
    repeat_interval_seconds: int = Field(default=3600, ge=1)
    resolve_after_seconds: int | None = Field(default=None, ge=1)
    allowed_lateness_seconds: int = Field(default=5400, ge=0)
    max_events_per_subject: int = Field(default=2000, ge=10)
    log_level: str = "INFO"
    mask_numbers_in_logs: bool = True

    def min_isr(self) -> int:
        """The ``min.insync.replicas`` in force (see ``min_insync_replicas``)."""
        if self.min_insync_replicas:
            return min(self.min_insync_replicas, self.replication_factor)
        return 2 if self.replication_factor >= 3 else 1

    def policy(self) -> Policy:
        f = self.critical_factor
        return Policy(
            caller_repeat=RuleSpec(
                Rule.CALLER_REPEAT, self.caller_repeat_threshold, self.caller_repeat_window_seconds, f
            ),
            did_hot=RuleSpec(Rule.DID_HOT, self.did_hot_threshold, self.did_hot_window_seconds, f),
            pair_repeat=RuleSpec(Rule.PAIR_REPEAT, self.pair_repeat_threshold, self.pair_repeat_window_seconds, f),
            caller_scan=RuleSpec(Rule.CALLER_SCAN, self.caller_scan_threshold, self.caller_scan_window_seconds, f),
            repeat_interval_s=self.repeat_interval_seconds,
            resolve_after_s=self.resolve_after_seconds,
            allowed_lateness_s=self.allowed_lateness_seconds,
            max_events=self.max_events_per_subject,
        )

    @property
    def caller_ticks_topic(self) -> str:
        return f"{self.app_id}.{self.ticks_topic_suffix}.callers"

    @property
    def did_ticks_topic(self) -> str:
        return f"{self.app_id}.{self.ticks_topic_suffix}.dids"


@lru_cache
def get_settings() -> StreamSettings:
    return StreamSettings()
