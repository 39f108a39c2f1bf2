"""Topic names and header names: the addresses in the contract (see schemas/README.md)."""

from typing import Final

EVENTS_TOPIC: Final = "nxcloud.binding-failures.v1"
"""Normalised push events. Key: normalised caller number (UTF-8); value: BindingFailureEvent JSON."""

DLQ_TOPIC: Final = "nxcloud.binding-failures.dlq.v1"
"""Authenticated pushes that can never become valid. Key: none; value: DeadLetterRecord JSON."""

ALERTS_TOPIC: Final = "bindwatch.alerts.v1"
"""Alerts. Key: the alert fingerprint (UTF-8), so the topic can be compacted; value: Alert JSON."""

BY_DID_TOPIC: Final = "bindwatch.internal.binding-failures-by-did.v1"
"""Internal repartition of deduplicated events by DID for the per-DID rule. Not a public contract."""

OVERVIEW_TOPIC: Final = "bindwatch.overview.v1"
"""The live overview of all failures, published every 10 s. One partition, compacted; key: ``global``
(``OVERVIEW_KEY``); value: Overview JSON."""

OVERVIEW_KEY: Final = "global"
"""The one key of the overview topic: compaction keeps the latest document."""

OUTAGE_PARTIALS_TOPIC: Final = "bindwatch.internal.outage-partials.v1"
"""Internal, one partition: each worker's per-partition minute counts for the overview aggregator.
Key: ``<stage>:<partition>``; value: ``stream.outage.Partial`` bytes. Not a public contract."""

HEADER_SCHEMA: Final = "schema"
"""Header naming the value's schema and version, e.g. ``bindwatch.BindingFailureEvent/1``."""

HEADER_REQUEST_ID: Final = "requestId"
"""Header carrying the push's requestId (events and dead letters that have one)."""

HEADER_CONTENT_TYPE: Final = "content-type"
