"""The live overview of all failures: the body of ``GET /v1/overview`` on any worker, and the value of
``bindwatch.overview.v1`` (one partition, compacted, key ``global``), published every 10 s so a consumer needs
no HTTP access to the workers.

Counts are exact: every caller lives in one partition of the events topic and every DID in one partition of the
by-DID stage, so per-partition counts (distinct counts included) add up; ``partitions`` says whether every
partition has reported.
"""

from typing import Literal

from pydantic import AwareDatetime, Field

from schemas.alerts import Severity
from schemas.events import SCHEMA_VERSION, _Contract


class OverviewMinute(_Contract):
    """One minute of event time (the push's occurrence time): a late push counts in the minute it happened."""

    minute: AwareDatetime = Field(description="Start of the minute (UTC).")
    newFailures: int = Field(ge=0, description="Failures seen for the first time (each requestId counts once).")
    duplicates: int = Field(ge=0, description="Re-sent pushes of a requestId already counted.")
    actions: dict[str, int] = Field(
        description="New failures per `data.action` (`(none)`: no action; `(other)`: past the first 32 actions)."
    )
    distinctCallers5m: int = Field(ge=0, description="Distinct callers that failed in the 5 minutes ending here.")
    distinctDids5m: int = Field(ge=0, description="Distinct DIDs that failed in the 5 minutes ending here.")


class OutageStatus(_Contract):
    """The `binding_outage` rule now: its inputs, and the alert while one is firing."""

    status: Literal["firing", "quiet"]
    fingerprint: str | None = Field(description="The firing outage's alert fingerprint (its Kafka key), or null.")
    severity: Severity | None = Field(description="Severity of the firing outage, or null.")
    firingSince: AwareDatetime | None = Field(description="Wall-clock time the outage fired, or null.")
    failures5m: int = Field(ge=0, description="New failures in the last 5 minutes (this minute and the 4 before).")
    distinctCallers5m: int = Field(ge=0)
    distinctDids5m: int = Field(ge=0)
    baseline: float = Field(ge=0, description="Median of the trailing hour's 5-minute totals.")
    baselineWindows: int = Field(
        ge=0,
        description="How many 5-minute totals the baseline is the median of (60 once an hour has been counted); "
        "the rule does not fire before 15.",
    )
    threshold: int = Field(description="Failures in 5 minutes that fire now: max(floor, factor x baseline).")
    minCallers: int = Field(description="Distinct callers needed as well.")
    firingLevel: int | None = Field(
        description="While firing: the threshold it fired at; it resolves after the 5-minute total has stayed "
        "below half of it for the resolve period."
    )


class TopNumber(_Contract):
    number: str = Field(description="Normalised caller or DID.")
    failures: int = Field(ge=1, description="New failures in the last 10 minutes.")


class StageCoverage(_Contract):
    reporting: int = Field(ge=0, description="Partitions whose counts reached the aggregator recently.")
    partitions: int = Field(ge=1, description="Partitions of the stage.")


class Coverage(_Contract):
    """Whether the counts are complete: a partition whose worker is down or rebalancing stops reporting."""

    callers: StageCoverage
    dids: StageCoverage


class Overview(_Contract):
    """All failures at a glance, built by the one aggregator worker from every partition's counts."""

    schemaVersion: Literal[1] = SCHEMA_VERSION
    generatedAt: AwareDatetime = Field(description="Wall-clock time the aggregator built this document.")
    minutes: list[OverviewMinute] = Field(description="The last 60 minutes of event time, oldest first.")
    outage: OutageStatus
    topCallers: list[TopNumber] = Field(
        max_length=10, description="Callers with the most new failures in the last 10 minutes (ties: by number)."
    )
    topDids: list[TopNumber] = Field(
        max_length=10, description="DIDs with the most new failures in the last 10 minutes (ties: by number)."
    )
    firingAlerts: dict[str, int] = Field(description="Firing alerts per rule (every rule, zero included).")
    partitions: Coverage
