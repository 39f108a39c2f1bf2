"""Create bindwatch's topics with the configured partition counts: ``python -m stream.admin create-topics``.

Run before the gateway and the workers start (the README's run command, compose's ``topics`` service
and the tests do). Faust requires the events topic to have as many partitions as its tables.
"""

import argparse
import asyncio
import sys

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from stream.compat import changelog_topic_name
from stream.config import StreamSettings
from stream.counting import OUTAGE_TABLE

DAY_MS = 24 * 3600 * 1000


def topic_specs(s: StreamSettings) -> list[NewTopic]:
    """Every topic bindwatch creates, all with the configured replication factor and ``min.insync.replicas``."""
    rf = s.replication_factor
    p = s.partitions
    isr = {"min.insync.replicas": str(s.min_isr())}
    specs = [
        NewTopic(s.events_topic, p, rf, topic_configs={"retention.ms": str(7 * DAY_MS)}),
        NewTopic(s.dlq_topic, 1, rf, topic_configs={"retention.ms": str(30 * DAY_MS)}),
        NewTopic(s.by_did_topic, p, rf, topic_configs={"retention.ms": str(DAY_MS)}),
        NewTopic(
            s.alerts_topic,
            p,
            rf,
            topic_configs={"cleanup.policy": "compact,delete", "retention.ms": str(30 * DAY_MS)},
        ),
        # The live overview: one key ("global"), so compaction keeps the latest document; hourly segments let
        # compaction run, and a topic no worker has written to for a week empties rather than showing old news.
        NewTopic(
            s.overview_topic,
            1,
            rf,
            topic_configs={
                "cleanup.policy": "compact,delete",
                "retention.ms": str(7 * DAY_MS),
                "segment.ms": str(3600 * 1000),
            },
        ),
        # Each worker's per-partition counts for the one aggregator (single partition: one consumer merges all).
        NewTopic(s.outage_partials_topic, 1, rf, topic_configs={"retention.ms": str(3600 * 1000)}),
        NewTopic(s.caller_ticks_topic, p, rf, topic_configs={"retention.ms": str(3600 * 1000)}),
        NewTopic(s.did_ticks_topic, p, rf, topic_configs={"retention.ms": str(3600 * 1000)}),
        # Faust creates its changelogs at start-up too, but sometimes too late for its own partition check
        # (PartitionsMismatch '...-dids-changelog has 0 partitions' crashed the DID agent): create them first.
        *(
            NewTopic(changelog_topic_name(s.app_id, table), p, rf, topic_configs={"cleanup.policy": "compact"})
            for table in ("callers", "dids")
        ),
        NewTopic(changelog_topic_name(s.app_id, OUTAGE_TABLE), 1, rf, topic_configs={"cleanup.policy": "compact"}),
    ]
    for t in specs:
        t.topic_configs = {**t.topic_configs, **isr}
    return specs


async def create_topics(s: StreamSettings, bound: float = 30.0) -> list[str]:
    """Create missing topics; return the names created. Existing topics are left as they are."""
    admin = AIOKafkaAdminClient(bootstrap_servers=s.kafka_bootstrap_servers, request_timeout_ms=int(bound * 1000))
    await asyncio.wait_for(admin.start(), bound)
    try:
        existing = set(await asyncio.wait_for(admin.list_topics(), bound))
        wanted = [t for t in topic_specs(s) if t.name not in existing]
        if wanted:
            try:
                await asyncio.wait_for(admin.create_topics(wanted), bound)
            except TopicAlreadyExistsError:
                pass
        return [t.name for t in wanted]
    finally:
        await asyncio.wait_for(admin.close(), bound)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stream.admin")
    parser.add_argument("command", choices=["create-topics"])
    parser.parse_args(argv)
    s = StreamSettings()
    try:
        created = asyncio.run(create_topics(s))
    except (KafkaError, OSError, TimeoutError) as exc:
        print(f"bindwatch: cannot create topics on {s.kafka_bootstrap_servers}: {exc!r}", file=sys.stderr)
        return 1
    print(
        f"bindwatch: topics ready ({len(created)} created, {s.partitions} partitions): "
        + ", ".join(t.name for t in topic_specs(s))
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
