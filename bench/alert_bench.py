"""Push-to-alert latency: pushes over HTTP at a constant rate through gateway, Kafka and one worker; for each
alert, the time from the POST of the push that crossed the threshold to the alert being readable on the topic.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

from bench import kafka_io, load, services, workload
from bench.context import TOKEN, Ctx
from bench.stream_bench import crashes, histogram_means, histogram_totals, stage_counts
from gateway.app import PUSH_PATH
from schemas import AlertStatus
from tests.support import kafka, procs

BATCH_METRICS = (
    "bindwatch_stream_batch_items",
    "bindwatch_stream_batch_seconds",
    "bindwatch_stream_batch_wait_seconds",
)


def _latencies(shots: list[load.Shot], alerts: list[tuple[float, Any]]) -> dict[str, list[float]]:
    """Milliseconds from the POST of the last-sent sample push (the one that crossed) to the first firing alert
    being read ("total"), split at the alert's ``emittedAt`` (the worker's clock when it decided): "to_emit"
    (gateway, Kafka, the worker's queue and processing) and "emit_to_read" (alert produced, acked, fetched);
    also "total" per rule."""
    sent = {s.rid: s.ts for s in shots if s.rid is not None and s.code == 200}
    seen: set[str] = set()
    out: dict[str, list[float]] = {"total": [], "to_emit": [], "emit_to_read": []}
    for read_at, a in alerts:
        if a.status is not AlertStatus.FIRING or a.fingerprint in seen:
            continue
        posts = [sent[r] for r in a.sampleRequestIds if r in sent]
        if not posts:
            continue
        seen.add(a.fingerprint)
        post, emitted = max(posts), a.emittedAt.timestamp()
        out["total"].append((read_at - post) * 1000)
        out["to_emit"].append((emitted - post) * 1000)
        out["emit_to_read"].append((read_at - emitted) * 1000)
        out.setdefault(f"total:{a.rule.value}", []).append((read_at - post) * 1000)
    return {k: sorted(v) for k, v in out.items()}


def _pcts(values: list[float]) -> dict[str, Any]:
    return {
        "n": len(values),
        "p50_ms": round(load.percentile(values, 50), 1),
        "p99_ms": round(load.percentile(values, 99), 1),
        "max_ms": round(values[-1], 1) if values else None,
    }


def push_to_alert(ctx: Ctx) -> dict[str, Any]:
    """At 1,000 pushes/s (and, for contrast, 250/s, run first): p50/p99 push-to-alert latency."""
    rates = [250, 1000]
    seconds = ctx.pick(60, 15)
    run = kafka_io.tag("p2a")
    s = kafka_io.stream_settings(ctx.bootstrap, run)
    kafka_io.setup(s)
    env = kafka.env_of(s)
    gw = services.gateway(
        ctx.gateway_env(s.events_topic, s.dlq_topic), ctx.logs, workers=2, baseline=False, name="gateway-p2a"
    )
    wk = services.worker({**env, "BINDWATCH_DATA_DIR": str(ctx.out / "state" / "worker-p2a")}, ctx.logs, "worker-p2a")
    steps = []
    with procs.running(wk, gw, timeout=180):
        url = gw.url(f"{PUSH_PATH}?token={TOKEN}")
        sent_total = 0
        for series, rate in enumerate(rates):
            pushes = workload.push_mix(rate * seconds, f"{run}-r{rate}", datetime.now(UTC), rate, series=series)
            crossing = sum(1 for p in pushes if p.crossing)
            targets = ctx.out / f"targets-p2a-{rate}.jsonl"
            workload.write_vegeta_targets(targets, url, pushes)
            meter = ctx.meter(gateway=gw, worker=wk)
            before = {m: histogram_totals(wk, m) for m in BATCH_METRICS}
            shots, alerts, caught_up = asyncio.run(_phase(ctx, s.alerts_topic, wk, targets, rate, seconds, sent_total))
            cpu = meter.read()
            after = {m: histogram_totals(wk, m) for m in BATCH_METRICS}
            targets.unlink()
            ok = sum(1 for x in shots if x.code == 200)
            sent_total += ok
            lat = _latencies(shots, alerts)
            total = _pcts(lat["total"])
            http = load.latency_summary(shots, rate, seconds)
            steps.append(
                {
                    "rate": rate,
                    "achieved_rps": http["achieved_rps"],
                    "ok_200": ok,
                    "http_p99_ms": http["p99_ms"],
                    "crossing_pushes": crossing,
                    "alerts_matched": total["n"],
                    "p50_ms": total["p50_ms"],
                    "p99_ms": total["p99_ms"],
                    "max_ms": total["max_ms"],
                    "split": {k: _pcts(v) for k, v in lat.items() if k != "total"},
                    "worker_caught_up_seconds_after_attack": caught_up,
                    "cpu_cores": cpu,
                    "worker_batches": {
                        "mean_items": histogram_means(after[BATCH_METRICS[0]], before[BATCH_METRICS[0]]),
                        "mean_processing_ms": histogram_means(after[BATCH_METRICS[1]], before[BATCH_METRICS[1]], 1000),
                        "mean_oldest_record_wait_ms": histogram_means(
                            after[BATCH_METRICS[2]], before[BATCH_METRICS[2]], 1000
                        ),
                    },
                }
            )
            lat_ms = lat["total"]
            ctx.shared[f"p2a_series_{rate}"] = lat_ms
    return {"seconds_per_rate": seconds, "gateway_workers": 2, "steps": steps, "agent_crashes": crashes([wk])}


async def _phase(
    ctx: Ctx, alerts_topic: str, wk: procs.Service, targets: Any, rate: int, seconds: int, before: int
) -> tuple[list[load.Shot], list[tuple[float, Any]], float | None]:
    watcher = kafka_io.AlertWatcher(ctx.bootstrap, alerts_topic)
    await watcher.start()
    try:
        shots = await asyncio.to_thread(
            load.vegeta, targets, rate=rate, seconds=seconds, out=ctx.out / f"vegeta-p2a-{rate}.bin"
        )
        # Wait (bounded) until the worker has seen every accepted push at both stages, then a little more.
        want = before + sum(1 for x in shots if x.code == 200)
        t0 = time.monotonic()
        caught_up = None
        while time.monotonic() - t0 < max(60.0, 3.0 * seconds):
            counts = await asyncio.to_thread(stage_counts, [wk])
            if counts["caller"] >= want and counts["did"] >= want:
                caught_up = round(time.monotonic() - t0, 1)
                break
            await asyncio.sleep(0.5)
        await asyncio.sleep(2.0)
    finally:
        await watcher.stop()
    return shots, watcher.seen, caught_up
