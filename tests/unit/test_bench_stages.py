"""``python -m bench.stages`` drives both stage cores in one process: every event must reach both stages once, or
its µs per event would be of less work than a worker does."""

import asyncio
import itertools

from bench import stages
from stream.config import StreamSettings


def test_every_event_reaches_both_stages_once_in_runs_per_partition() -> None:
    n = 3000
    messages = stages.backlog(n, "t")
    assert len(messages) == n
    runs = [len(list(group)) for _p, group in itertools.groupby(m.partition for m in messages)]
    assert max(runs) <= stages.RUN and len(runs) <= 2 * stages.PARTITIONS  # handed over a partition's run at a time
    out = asyncio.run(stages.drain(messages, StreamSettings(batch_size=1000, did_batch_records=4)))
    assert out["items"] == {"caller": n, "did": n}
    assert out["alerts"] > 0  # the mix's repeaters and hot DIDs fire: the rules ran, not only the decoding
