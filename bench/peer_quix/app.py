"""The quixstreams peer baseline (issue 13): the core of bindwatch's job written the way a Python team would
write it with quixstreams 3.28 today, drained from the same backlog in the same run as the bindwatch worker.

* stage 1, keyed by caller: an exact sliding 10-minute count of failures in event time (the event timestamps
  kept in the RocksDB state store, which quixstreams changelogs to Kafka); an alert record when it reaches 3;
* repartition by DID (``group_by``: an internal topic, like bindwatch's by-DID topic);
* stage 2, keyed by DID: the same sliding count, an alert at 5.

What it does NOT do that bindwatch does: requestId deduplication, the pair and scan rules, alert lifecycle
(repeat, severity, resolution), late-event bounds. So it is a lower bound on what the job costs in quixstreams.

Runs under ``.venv-quix`` (bench/peer_quix/requirements.txt), started by ``bench/peer.py``; it writes its progress
(events seen by each stage) to a JSON file once a second so the runner knows when the backlog is drained.

    .venv-quix/bin/python bench/peer_quix/app.py --bootstrap 127.0.0.1:19592 --topic T --group G \
        --state-dir DIR --progress FILE [--caller-stage-only]
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import threading
import time
from typing import Any

from quixstreams import Application, State

WINDOW_MS = 600_000
CALLER_THRESHOLD = 3
DID_THRESHOLD = 5


def _iso_ms(value: str) -> int:
    """'2026-11-29T09:00:00Z' (or with fractions) -> epoch ms, without datetime's overhead per event."""
    from datetime import datetime

    return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)


def sliding_count(state: State, ts: int) -> int:
    """Insert ``ts`` and return how many kept timestamps fall in (ts - window, ts]; prune what can never count."""
    kept: list[int] = state.get("ts", [])
    bisect.insort(kept, ts)
    newest = kept[-1]
    first = bisect.bisect_right(kept, newest - WINDOW_MS)
    if first:
        del kept[:first]
    state.set("ts", kept)
    lo = bisect.bisect_right(kept, ts - WINDOW_MS)
    hi = bisect.bisect_right(kept, ts)
    return hi - lo


class Progress:
    """Events seen per stage, written to a file by a thread twice a second (the last events of a drain come with
    no later event to trigger a write)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.counts: dict[str, Any] = {"caller": 0, "did": 0, "alerts": 0}
        threading.Thread(target=self._loop, daemon=True).start()

    def seen(self, stage: str, alert: bool) -> None:
        """Count, and stamp wall clock and process CPU (all threads) at the first event and each stage's last."""
        stamp = (time.time(), time.process_time())
        if "first" not in self.counts:
            self.counts["first"] = stamp
        self.counts[stage] += 1
        self.counts[f"{stage}_last"] = stamp
        self.counts["alerts"] += alert

    def _loop(self) -> None:
        while True:
            time.sleep(0.5)
            self.flush()

    def flush(self) -> None:
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(dict(self.counts), f)
        os.replace(tmp, self.path)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--state-dir", required=True)
    ap.add_argument("--progress", required=True)
    ap.add_argument("--caller-stage-only", action="store_true")
    a = ap.parse_args()
    progress = Progress(a.progress)

    app = Application(
        broker_address=a.bootstrap,
        consumer_group=a.group,
        auto_offset_reset="earliest",
        state_dir=a.state_dir,
        loglevel="WARNING",
    )
    events = app.topic(a.topic, key_deserializer="str", value_deserializer="json")
    alerts = app.topic(f"{a.group}.alerts", key_serializer="str", value_serializer="json")

    def caller_stage(value: dict[str, Any], state: State) -> dict[str, Any]:
        n = sliding_count(state, _iso_ms(value["occurredAt"]))
        alert = n == CALLER_THRESHOLD
        progress.seen("caller", alert)
        return {"caller": value["caller"], "did": value["did"], "at": value["occurredAt"], "n": n, "alert": alert}

    def did_stage(value: dict[str, Any], state: State) -> dict[str, Any]:
        n = sliding_count(state, _iso_ms(value["at"]))
        alert = n == DID_THRESHOLD
        progress.seen("did", alert)
        return {**value, "n": n, "alert": alert}

    sdf = app.dataframe(events)
    sdf = sdf.apply(caller_stage, stateful=True)
    sdf.filter(lambda v: v["alert"]).apply(lambda v: {"rule": "caller_repeat", **v}).to_topic(alerts)
    if not a.caller_stage_only:
        by_did = sdf.group_by(lambda v: v["did"], name="did")
        by_did = by_did.apply(did_stage, stateful=True)
        by_did.filter(lambda v: v["alert"]).apply(lambda v: {"rule": "did_hot", **v}).to_topic(alerts)
    try:
        app.run()
    finally:
        progress.flush()


if __name__ == "__main__":
    main()
