"""Render docs/reliability.md from the JSON lines the reliability suite writes.

python -m tests.reliability.report RESULTS.jsonl > docs/reliability.md
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main(path: str) -> str:
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    faults = [
        r
        for r in rows
        if "offered" in r and not r.get("cluster") and "killed_node" not in r and "cluster" not in str(r["scenario"])
    ]
    cluster = [r for r in rows if "offered" in r and r not in faults]
    hostile = [r for r in rows if r.get("scenario") == "hostile input corpus"]
    abuse = [r for r in rows if r.get("kind") == "connection abuse"]
    profile = rows[0]["profile"] if rows else "?"
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT, check=False
    ).stdout.strip()
    out = [
        "# Reliability: faults, retries and hostile input",
        "",
        "Regenerate with `scripts/reliability.sh` (profile `full`; the test command runs the shorter `ci` profile",
        "of the same scenarios). Each scenario runs against one long-lived rig — a real Apache Kafka broker, the",
        "gateway and a stream worker as processes — while the NXCLOUD simulator (`tests/support/nxcloud.py`) offers",
        "pushes at a steady rate and retries anything but a 200 every second, up to 60 times, then gives up.",
        "Checks after each scenario cover everything sent so far: every accepted `requestId` is on the events topic,",
        "every per-caller and per-DID count in the worker equals the count of distinct accepted pushes, and the",
        "`firing` alerts equal those the pure rules compute from the same input.",
        "",
        f"Latest run: profile `{profile}`, commit `{commit}`, {rows[0]['at'] if faults else '?'}, "
        f"{platform.machine()} / Python {platform.python_version()}.",
        "",
        "| scenario | load offered | accepted | retried | given up | lost | double-counted | under-counted "
        "| alerts expected / produced | duplicate firing | re-sent alert records | s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in faults:
        extra = f" (+{r['redelivered']} redelivered)" if r.get("redelivered") else ""
        out.append(
            f"| {r['scenario']} | {r['offered']} at {r['rate']}/s{extra} | {r['accepted']} | {r['retried']} "
            f"| {r['given_up']} | {r['lost']} | {r['double_counted']} | {r['under_counted']} "
            f"| {r['alerts_expected']} / {r['alerts_produced']} | {r['duplicate_firing']} "
            f"| {r['resent_alert_records']} | {r['seconds']} |"
        )
    out += [
        "",
        "*retried*: pushes that needed more than one attempt (they got a 503 or no answer first). *re-sent alert "
        "records*: the same `alertId` written twice (at-least-once delivery after a crash; consumers deduplicate "
        "by `alertId`). Counts and alerts are cumulative over the scenarios above them.",
        "",
        "## Hostile input",
        "",
    ]
    for h in hostile:
        out += [
            f"{h['requests']} generated bad requests (wrong types, missing fields, huge and deeply nested bodies, "
            "invalid UTF-8, wrong content types and methods, header and query tricks, token guessing, oversized "
            "numbers) against the gateway process:",
            "",
            "| status | requests |",
            "|---|---|",
            *[f"| {k} | {v} |" for k, v in h["statuses"].items()],
            "",
            f"5xx other than 503: **{h['5xx_other_than_503']}**; token or unmasked number in a response or the log: "
            f"**{h['leaks']}**; the gateway process stayed up. A schema-driven fuzz run (schemathesis over the "
            "OpenAPI document, `tests/unit/test_fuzz.py`, 300 examples) runs in the test command too.",
        ]
    out += cluster_table(cluster)
    out += connection_abuse(abuse)
    return "\n".join(out) + "\n"


def cluster_table(rows: list[dict[str, object]]) -> list[str]:
    """The cluster profile (tests/reliability/test_cluster.py): 3 KRaft nodes, replication factor 3, min ISR 2."""
    if not rows:
        return []
    out = [
        "",
        "## A 3-broker cluster",
        "",
        "`tests/reliability/test_cluster.py` (`ci`: leader SIGKILL only; `scripts/reliability.sh --cluster`: all): "
        "three KRaft nodes (broker+controller each, 384 MiB heaps) from `BINDWATCH_KAFKA_NODES=3 scripts/kafka.sh`, "
        "every bindwatch topic and changelog with replication factor 3 and `min.insync.replicas=2`, the gateway "
        "(2 s produce bound) and one worker (`BINDWATCH_STANDBY_REPLICAS=1`; the standby scenario adds a second "
        "worker with a 10 s session timeout). *non-200 s*: whole seconds in which some push got an answer other "
        "than 200 (NXCLOUD retried it). *counts current after*: from the end of the load to every count in the "
        "worker being exact (polled every 2 s). *takeover*: from the worker's SIGKILL to the survivor answering "
        "`/readyz` 200 again after the rebalance that gave it the lost partitions.",
        "",
        "| scenario | load offered | accepted | retried | given up | lost | double-counted | under-counted "
        "| alerts expected / produced | non-200 s | counts current after, s | takeover, s | s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['scenario']} | {r['offered']} at {r['rate']}/s | {r['accepted']} | {r['retried']} "
            f"| {r['given_up']} | {r['lost']} | {r['double_counted']} | {r['under_counted']} "
            f"| {r['alerts_expected']} / {r['alerts_produced']} | {r.get('unavailable_seconds', '-')} "
            f"| {r.get('counts_current_after_s', '-')} | {r.get('takeover_s', '-')} | {r['seconds']} |"
        )
    return out


def connection_abuse(rows: list[dict[str, object]]) -> list[str]:
    """The "Connection abuse" table (tests/reliability/test_connections.py): held connections against the real
    gateway process while one valid push a second must keep getting 200."""
    if not rows:
        return []
    out = [
        "",
        "## Connection abuse",
        "",
        "Against the gateway process (`tests/reliability/test_connections.py`), on 127.0.0.1, with test settings: "
        "request deadline 4 s, idle deadline 2 s (defaults 10 s and 5 s), a process limit of 200 in the limit row. "
        "*closed after*: from the connection's first byte (or its connect, for silent ones) to the server closing it.",
        "",
        "| scenario | connections | deadline s | closed | closed after, max s | valid pushes: 200 / sent "
        "| push p50 / max ms | evicted |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['scenario']} | {r['connections']} | {r['deadline_s'] or '-'} | {r['closed']} "
            f"| {r['closed_after_max_s']} | {r['pushes_200']} / {r['pushes']} "
            f"| {r['push_p50_ms'] or '-'} / {r['push_max_ms'] or '-'} | {r.get('evicted', '-')} |"
        )
    return out


if __name__ == "__main__":
    sys.stdout.write(main(sys.argv[1]))
