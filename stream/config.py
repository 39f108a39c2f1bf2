"""Stream worker settings: one pydantic-settings class, every variable documented in the README."""

from functools import lru_cache
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.alerts import Rule
from schemas.topics import ALERTS_TOPIC, BY_DID_TOPIC, DLQ_TOPIC, EVENTS_TOPIC, OUTAGE_PARTIALS_TOPIC, OVERVIEW_TOPIC
from stream.outage import OutagePolicy
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
    overview_topic: str = OVERVIEW_TOPIC
    outage_partials_topic: str = OUTAGE_PARTIALS_TOPIC
    ticks_topic_suffix: str = "ticks"
    partitions: int = Field(default=8, ge=1, le=1024)
    replication_factor: int = Field(default=1, ge=1)
    min_insync_replicas: int = Field(default=0, ge=0)
    """``min.insync.replicas`` of every topic bindwatch creates; 0 means 2 when the replication factor is 3 or
    more (one broker may be down and a write is still on two), else 1."""
    standby_replicas: int = Field(default=0, ge=0, le=3)
    """Faust ``table_standby_replicas``: other workers keep a warm copy of each table partition by reading its
    changelog, so a worker lost with its disk is replaced without a full restore."""
    bulk_restore_seconds: float = Field(default=60.0, ge=0, le=75)
    """Time budget of the bulk restore that starts each table recovery (``stream.restore``: a plain consumer
    and batched RocksDB writes instead of Faust's record-by-record path, ~5x faster on a cold restore); what
    is left after it, Faust restores record by record. 0 turns it off. Below Faust's request timeout (90 s),
    which bounds each recovery step. Only with the RocksDB store."""
    store: str = "rocksdb://"
    data_dir: str = "./var/stream"
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    canonical_url: str | None = None
    tick_seconds: float = Field(default=5.0, gt=0)
    gc_batch: int = Field(default=20000, ge=100)
    commit_interval_seconds: float = Field(default=2.0, gt=0)
    batch_size: int = Field(default=8000, ge=1, le=10000)
    """Events the caller stage takes at once: each caller in a batch is read and written once, and the batch
    goes to the DID stage as one record per partition. Every batch waits for two acknowledgements (its alerts,
    then its table writes), so larger batches cost less per event under a backlog (2,000 against 500: 0.95x
    the CPU per event, ``bench/README.md``). A caller failing again and again (a storm: every caller retrying
    one DID) has its whole value rewritten once per batch it is in, so under a storm's backlog the batch size
    divides the bytes written: at 8,000 against 2,000 a 100,000-event storm drained 1.8x faster at 0.57x the
    CPU per event, a uniform backlog at the same speed (1.01x). The input bounds batches before this does
    (5,500-7,700 events under a backlog on the bench); at a moderate rate a batch holds what arrived within
    ``batch_wait_ms`` whatever this is."""
    did_batch_records: int = Field(default=32, ge=1, le=1000)
    """Records (bundles of up to 500 entries, or ticks) the DID stage takes at once: each DID in them is read
    and written once, and their alerts are acknowledged together. A caller batch makes one bundle per DID
    partition (more when one holds over 500 entries), so the default takes about four caller batches' worth."""
    batch_wait_ms: int = Field(default=50, ge=1, le=5000)
    """How long a batch's first event may wait for company (less when the batch fills first): the most a stage adds
    to an alert's latency besides processing. Records are read on while a batch is processed
    (``stream.intake``), so under load batches grow with the processing time, not with this wait."""
    direct_input: bool = True
    """Take each stage's records straight from Faust's consumer (``stream.intake``) instead of through an
    agent's stream (``compat.take_batches``): the same batches, acknowledgements and rebalance behaviour, with
    a fraction of the per-record cost. Off is the fallback should a Faust upgrade break the direct path (its
    guard tests in ``tests/unit/test_compat.py`` say so first)."""
    fetch_max_wait_ms: int = Field(default=100, ge=1, le=1500)
    """How long the broker may hold the worker consumer's fetch when it has no new records (Faust's: 1,500 ms).
    aiokafka keeps one fetch in flight per broker, so records arriving on a partition that fetch does not
    cover wait for it to end: at 1,500 the DID stage got the caller stage's forwards up to 1.5 s late under load
    (``stream.compat``). An idle worker sends one empty fetch per interval."""
    gc_threshold: int = Field(default=1_000_000, ge=0, le=10_000_000)
    """Net allocations of tracked objects (allocations minus deallocations) between two young-generation
    collections of Python's cycle collector (its default is 700; 0 keeps Python's settings). Set at start, after
    everything loaded at start is frozen out of collection (``gc.freeze``): the worker allocates tens of objects
    per event, almost none in cycles (reference counting frees them), so what a young collection finds is what
    the worker keeps on purpose (the decoded subjects of ``hot_subjects``, records waiting in the intake, a batch's
    items), walked for nothing. Measured A/B on one backlog (``bench/README.md``): 50,000 cost 0.73x the CPU per
    event of 700; 200,000 0.93x of 50,000 (the collector 8.5-9.6% of a 200,000-event drain down to 0.8-2.1% on
    one machine, 3.4-4.1% on another); 1,000,000 0.955x of 200,000, 1.05x events/s in three rounds of four, the
    collector under 0.05%. A young collection then walks up to that many objects (tens of milliseconds, rare);
    garbage in cycles waits for it: bounded by the same count."""
    native: Literal["auto", "off", "require"] = "auto"
    """Run the compiled stream core (``stream.native``): ``auto`` when it is built from the current sources, else
    the Python source; ``off`` the source; ``require`` compiled or fail. Read when ``stream`` is imported, before
    settings exist (it decides how modules are imported); this field documents and validates it."""
    hot_subjects: int = Field(default=10000, ge=0, le=1_000_000)
    """Decoded subjects each stage keeps between batches (the most recently written; 0 turns it off): a subject
    seen again (a repeat caller, a hot DID, a storm) skips its table read and decode. Also bounded by the size of
    their table values (``stream.core.HOT_VALUE_BYTES``, 32 MiB). Dropped at every rebalance and recovery; the
    table stays the only durable copy."""
    rebuild_slice_ms: float = Field(default=5.0, gt=0, le=1000)
    """How long the index rebuild reads subjects before it yields to the batches. After a recovery or rebalance
    the worker counts and answers at once; the index of firing subjects (resolutions, the overview's firing
    counts) of the partitions it did not hold follows, a slice at a time (``StageCore.begin_rebuild``)."""
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

    # binding_outage and the overview (stream/outage.py; defaults justified in OutagePolicy and the README)
    outage_min_failures: int = Field(default=200, ge=1, le=10_000_000)
    """Floor of the outage threshold: new failures (all callers) in 5 minutes."""
    outage_factor: float = Field(default=4.0, ge=1.0, le=1000.0)
    """The threshold is max(floor, factor x baseline), baseline the median 5-minute total of the last hour."""
    outage_min_callers: int = Field(default=50, ge=1, le=10_000_000)
    """Distinct callers that must have failed in the same 5 minutes: one scanner is never an outage."""
    outage_resolve_seconds: int = Field(default=300, ge=10, le=86_400)
    """Wall-clock time the 5-minute total must stay below half the firing level before ``resolved``."""
    outage_detection: bool = True
    """Global minute counts, ``binding_outage`` and the overview. Off: the stages count nothing for them (the
    overview stays empty and no outage fires); per-number rules are unchanged. For measuring what counting costs
    (``bench``: stream_outage_cost) and as an escape hatch."""
    outage_publish_seconds: float = Field(default=5.0, ge=0.5, le=60.0)
    """How often each worker sends its partitions' counts to the aggregator (one record per partition, not
    per event): with the aggregator's evaluation, bounds how late an outage fires and a worker learns of it."""
    overview_publish_seconds: float = Field(default=10.0, ge=1.0, le=300.0)
    """How often the aggregator publishes the overview to ``bindwatch.overview.v1``."""
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

    def outage_policy(self) -> OutagePolicy:
        return OutagePolicy(
            min_failures=self.outage_min_failures,
            factor=self.outage_factor,
            min_callers=self.outage_min_callers,
            resolve_s=self.outage_resolve_seconds,
            critical_factor=self.critical_factor,
            repeat_interval_s=self.repeat_interval_seconds,
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
