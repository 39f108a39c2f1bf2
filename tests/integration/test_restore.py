"""A worker that lost its disk restores its tables from the changelogs, by the bulk restore
(``stream.restore``, the default) and by Faust's record-by-record recovery (``BINDWATCH_BULK_RESTORE_SECONDS=0``):
both must leave RocksDB holding exactly what the changelogs say, and count on exactly."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from rocksdict import AccessType, Options, Rdict

from stream.compat import changelog_topic_name
from stream.config import StreamSettings
from tests.integration.test_stream import check_counts, random_input, records_now
from tests.support import procs
from tests.support.events import expected
from tests.support.kafka import Names, produce, setup_topics

pytestmark = pytest.mark.integration
TABLES = ("callers", "dids")
Contents = dict[tuple[str, int], dict[bytes, bytes]]


async def _changelogs(bootstrap: str, app_id: str, partitions: int) -> Contents:
    """What the changelogs say: the last value of each key per table partition (a tombstone removes it)."""
    out: Contents = {(t, p): {} for t in TABLES for p in range(partitions)}
    for table in TABLES:
        topic = changelog_topic_name(app_id, table)
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
        await asyncio.wait_for(consumer.start(), 30)
        try:
            tps = [TopicPartition(topic, p) for p in range(partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
                for tp, recs in (await consumer.getmany(timeout_ms=1000)).items():
                    for r in recs:
                        assert r.key is not None
                        if r.value is None:
                            out[(table, tp.partition)].pop(r.key, None)
                        else:
                            out[(table, tp.partition)][r.key] = r.value
        finally:
            await asyncio.wait_for(consumer.stop(), 30)
    return out


def _rocksdb(data_dir: Path, partitions: int) -> Contents:
    """The worker's tables on disk (without Faust's own offset key)."""
    out: Contents = {}
    for table in TABLES:
        for p in range(partitions):
            path = data_dir / "v1" / "tables" / f"{table}-{p}.db"
            db = Rdict(str(path), options=Options(raw_mode=True), access_type=AccessType.read_only())
            try:
                items = [(k, v) for k, v in db.items() if isinstance(k, bytes) and isinstance(v, bytes)]
                out[(table, p)] = {k: v for k, v in items if not k.startswith(b"__faust")}
            finally:
                db.close()
    return out


def test_cold_restore_bulk_and_record_by_record_give_the_changelogs_contents(bootstrap: str, logdir: Path) -> None:
    names = Names.new("restore")
    s = setup_topics(bootstrap, names)
    events = random_input(3000, seed=11)
    _want, callers, dids = expected(events, StreamSettings().policy())
    env = {**names.env(bootstrap), "BINDWATCH_STORE": "rocksdb://"}
    first = procs.worker({**env, "BINDWATCH_DATA_DIR": str(logdir / "restore-first")}, logdir, "restore-first")
    first.start(timeout=120)
    try:
        produce(bootstrap, s.events_topic, records_now(events))
        check_counts(first, callers, dids, timeout=240)
    finally:
        first.stop()
    for how, seconds in (("faust", "0"), ("bulk", "60")):
        data_dir = logdir / f"restore-{how}"  # empty: everything comes from the changelogs
        wk = procs.worker(
            {**env, "BINDWATCH_DATA_DIR": str(data_dir), "BINDWATCH_BULK_RESTORE_SECONDS": seconds},
            logdir,
            f"restore-{how}",
        )
        wk.start(timeout=180)  # ready only once the tables are restored
        try:
            check_counts(wk, callers, dids, timeout=60)
        finally:
            wk.stop()
        log = wk.log_text()
        assert "Traceback" not in log, wk.log_tail()
        bulk = re.findall(r"bulk restore: (\d+) changelog records in [0-9.]+ s \(complete\)", log)
        if how == "bulk":
            assert bulk and int(bulk[0]) >= len(callers) + len(dids), wk.log_tail()
        else:
            assert not bulk and "bulk restore" not in log
        # Read after the worker stopped: whatever it wrote itself is on both sides.
        on_disk = _rocksdb(data_dir, s.partitions)
        said = asyncio.run(_changelogs(bootstrap, s.app_id, s.partitions))
        assert sum(len(v) for v in said.values()) >= len(callers) + len(dids)
        for part, kv in said.items():
            assert on_disk[part] == kv, f"{how}: {part} differs from its changelog"
