"""Stream benchmarks: drain a backlog through the full topology (1 and 2 workers) against a plain decoding
consumer; state size, memory and changelog recovery; processed rate against offered rate; a worker profile.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from bench import kafka_io, peer, profiling, services, workload
from bench.context import Ctx, per_unit_us
from stream.config import StreamSettings
from tests.support import kafka, procs

_LABELS = re.compile(r'(\w+)="([^"]*)"')


def stage_counts(workers: list[procs.Service]) -> dict[str, float]:
    """Events seen per stage (every result: new, duplicate, ...), summed over the workers' /metrics."""
    out = {"caller": 0.0, "did": 0.0}
    for w in workers:
        status, body = procs.http_get(w.url("/metrics"), timeout=5)
        if status != 200:
            continue
        for line in body.decode().splitlines():
            if line.startswith("bindwatch_stream_events_total{"):
                labels, _, value = line.partition("} ")
                stage = dict(_LABELS.findall(labels)).get("stage", "")
                out[stage] = out.get(stage, 0.0) + float(value)
    return out


def mean_batches(w: procs.Service) -> dict[str, float]:
    """Mean items per batch by stage, from the worker's ``bindwatch_stream_batch_items`` histogram."""
    status, body = procs.http_get(w.url("/metrics"), timeout=5)
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for line in body.decode().splitlines() if status == 200 else []:
        for suffix, into in (("_sum{", sums), ("_count{", counts)):
            if line.startswith("bindwatch_stream_batch_items" + suffix):
                labels, _, value = line.partition("} ")
                into[dict(_LABELS.findall(labels)).get("stage", "")] = float(value)
    return {stage: round(sums[stage] / counts[stage], 1) for stage in sums if counts.get(stage)}


LOG_TROUBLE = ("producer buffer full", "is overlapping")


def log_trouble(workers: list[procs.Service]) -> dict[str, int]:
    """How often the workers' logs show the stalls issue 13 found (buffer-full storms, commit overruns)."""
    text = "".join(w.log_path.read_text(errors="replace") for w in workers if w.log_path.exists())
    return {needle: text.count(needle) for needle in LOG_TROUBLE}


def crashes(workers: list[procs.Service]) -> list[str]:
    """Faust agents that crashed (the worker process lives on and /readyz still answers 200)."""
    out = []
    for w in workers:
        text = w.log_path.read_text(errors="replace") if w.log_path.exists() else ""
        out += [f"{w.name}: {line.strip()[:300]}" for line in text.splitlines() if "Crashed reason=" in line]
    return out


def _drain_timeout(n: int) -> float:
    return 90 + n / 250  # bounded, yet generous for a worker far below target speed


def _wait_drained(ws: list[procs.Service], n: int, timeout: float) -> dict[str, Any]:
    """Poll /metrics twice a second until both stages saw ``n`` events. Times are from the first event seen."""
    t0 = time.monotonic()
    t_first: float | None = None
    t_caller: float | None = None
    series: list[tuple[float, float, float]] = []
    counts = {"caller": 0.0, "did": 0.0}
    while time.monotonic() - t0 < timeout:
        counts = stage_counts(ws)
        now = time.monotonic()
        if t_first is None and counts["caller"] > 0:
            t_first = now
        if t_caller is None and counts["caller"] >= n:
            t_caller = now
        series.append((round(now - t0, 2), counts["caller"], counts["did"]))
        if counts["caller"] >= n and counts["did"] >= n:
            break
        time.sleep(0.5)
    end = time.monotonic()
    start = t_first or t0
    done = counts["caller"] >= n and counts["did"] >= n
    secs = end - start
    return {
        "complete": done,
        "seconds": round(secs, 1),
        "events_per_s": round(min(counts["caller"], counts["did"], n) / secs) if secs > 0 else 0,
        "caller_stage_seconds": round(t_caller - start, 1) if t_caller else None,
        "counts": counts,
        "series": series[:: max(1, len(series) // 400)],
    }


def _workers(
    ctx: Ctx, s: StreamSettings, count: int, prefix: str, extra: dict[str, str] | None = None
) -> list[procs.Service]:
    env = {**kafka.env_of(s), **(extra or {})}
    return [
        services.worker(
            {**env, "BINDWATCH_DATA_DIR": str(ctx.out / "state" / f"{prefix}-{i}")}, ctx.logs, f"{prefix}-{i}"
        )
        for i in range(count)
    ]


def _drain(
    ctx: Ctx, events_topic: str, n: int, count: int, extra: dict[str, str] | None = None, label: str = ""
) -> tuple[dict[str, Any], StreamSettings]:
    """A fresh app (own group, internal topics, state) with ``count`` workers reads the shared backlog."""
    s = kafka_io.stream_settings(ctx.bootstrap, kafka_io.tag(f"st{count}w{label}"), events_topic)
    kafka_io.setup(s)
    ws = _workers(ctx, s, count, f"worker-{count}w{label}", extra)
    with procs.running(*ws, timeout=180):
        meter = ctx.meter(workers=[p for w in ws for p in w.pids()])
        res = _wait_drained(ws, n, _drain_timeout(n))
        res["cpu_cores"] = cpu = meter.read()
        res["worker_us_per_event"] = per_unit_us(cpu["workers"], res["events_per_s"])
        res["broker_us_per_event"] = per_unit_us(cpu.get("broker", 0.0), res["events_per_s"])
        res["rss_mib"] = [round(services.rss_mib(w.pid), 1) for w in ws]
        res["mean_batch_items"] = [mean_batches(w) for w in ws]
        res["state_mib"] = [round(services.du_mib(Path(w.env["BINDWATCH_DATA_DIR"])), 1) for w in ws]
    res["workers"] = count
    res["agent_crashes"] = crashes(ws)
    res["log_trouble"] = log_trouble(ws)
    return res, s


def _backlog(ctx: Ctx, n: int) -> tuple[str, dict[str, Any]]:
    run = kafka_io.tag("backlog")
    s = kafka_io.stream_settings(ctx.bootstrap, run)
    kafka_io.setup(s)
    produced = kafka_io.produce(ctx.bootstrap, s.events_topic, workload.backlog(n, run))
    return s.events_topic, produced


def stream_throughput(ctx: Ctx) -> dict[str, Any]:
    """Events/s through the full topology for a backlog of N, with 1 and 2 workers; baselines on the same
    backlog in the same run: a plain aiokafka consumer that reads and decodes it, and the quixstreams peer
    (bench/peer.py: the core of the job in quixstreams, with and without its DID stage)."""
    n = int(ctx.shared.get("events") or ctx.pick(1_000_000, 100_000))
    topic, produced = _backlog(ctx, n)
    plain = kafka_io.plain_consume(ctx.bootstrap, topic, n, timeout=600)
    peer_dir = ctx.out / "peer"
    peer_dir.mkdir(parents=True, exist_ok=True)
    quix = peer.drain(ctx.bootstrap, topic, n, peer_dir, timeout=_drain_timeout(n))
    quix_caller = peer.drain(ctx.bootstrap, topic, n, peer_dir, caller_stage_only=True, timeout=_drain_timeout(n))
    one, s1 = _drain(ctx, topic, n, 1)
    ctx.shared["drained"] = {"settings": s1, "n": n, "rss_mib": one["rss_mib"][0], "state_mib": one["state_mib"][0]}
    two, _ = _drain(ctx, topic, n, 2)
    ctx.shared["drain_series"] = {"1 worker": one["series"], "2 workers": two["series"]}
    shape = workload.BacklogShape(n)
    return {
        "events": n,
        "mix": {
            "distinct_callers": shape.distinct_callers(),
            "repeat_callers": shape.repeat_callers,
            "hot_dids": shape.hot_dids,
        },
        "backlog_produce": produced,
        "plain_consumer": plain,
        "quixstreams_peer": quix,
        "quixstreams_peer_caller_stage_only": quix_caller,
        "one_worker": one,
        "two_workers": two,
        "ratio_to_plain": {
            "1w": round(one["events_per_s"] / plain["events_per_s"], 4),
            "2w": round(two["events_per_s"] / plain["events_per_s"], 4),
        },
        "ratio_to_quixstreams_peer": {
            "1w": round(one["events_per_s"] / max(quix["events_per_s"], 1), 3),
            "2w": round(two["events_per_s"] / max(quix["events_per_s"], 1), 3),
            "cpu_per_event_1w": round(one["worker_us_per_event"] / max(quix["peer_us_per_event"], 0.1), 2),
        },
        "two_worker_speedup": round(two["events_per_s"] / max(one["events_per_s"], 1), 2),
    }


def stream_outage_cost(ctx: Ctx) -> dict[str, Any]:
    """What outage detection's global counting costs (issue 14, target >= 0.95x): one worker drains the same
    backlog with BINDWATCH_OUTAGE_DETECTION off (the baseline) and on, in the same run."""
    n = int(ctx.shared.get("events") or ctx.pick(200_000, 50_000))
    topic, _ = _backlog(ctx, n)
    off, _ = _drain(ctx, topic, n, 1, {"BINDWATCH_OUTAGE_DETECTION": "false"}, "off")
    on, _ = _drain(ctx, topic, n, 1, {"BINDWATCH_OUTAGE_DETECTION": "true"}, "on")
    return {
        "events": n,
        "counting_off": off,
        "counting_on": on,
        "ratio_on_to_off": round(on["events_per_s"] / max(off["events_per_s"], 1), 3),
        "cpu_per_event_on_to_off": round(on["worker_us_per_event"] / max(off["worker_us_per_event"], 0.1), 3),
    }


def stream_storm(ctx: Ctx) -> dict[str, Any]:
    """A storm (N events to one DID from 2,000 callers; issue 13: 20,000) against the uniform backlog of the
    same size (the baseline), each drained by one fresh worker in the same run; target >= 0.9x."""
    n = int(ctx.shared.get("events") or ctx.pick(40_000, 20_000))
    uniform_topic, _ = _backlog(ctx, n)
    run = kafka_io.tag("storm")
    st = kafka_io.stream_settings(ctx.bootstrap, run)
    kafka_io.setup(st)
    kafka_io.produce(ctx.bootstrap, st.events_topic, workload.storm(n, run))
    uniform, _ = _drain(ctx, uniform_topic, n, 1, label="uniform")
    storm, _ = _drain(ctx, st.events_topic, n, 1, label="storm")
    return {
        "events": n,
        "storm_callers": 2000,
        "uniform": uniform,
        "storm": storm,
        "ratio_storm_to_uniform": round(storm["events_per_s"] / max(uniform["events_per_s"], 1), 3),
        "cpu_per_event_storm_to_uniform": round(
            storm["worker_us_per_event"] / max(uniform["worker_us_per_event"], 0.1), 3
        ),
    }


def stream_state(ctx: Ctx) -> dict[str, Any]:
    """RSS and on-disk state after the backlog's distinct callers; restart time with the state (warm) and
    after deleting it (cold: the tables are restored from their changelogs)."""
    drained = ctx.shared.get("drained")
    if drained is None:  # run on its own: make the state first
        n = int(ctx.shared.get("events") or ctx.pick(1_000_000, 100_000))
        topic, _ = _backlog(ctx, n)
        one, s1 = _drain(ctx, topic, n, 1)
        drained = {"settings": s1, "n": n, "rss_mib": one["rss_mib"][0], "state_mib": one["state_mib"][0]}
    s: StreamSettings = drained["settings"]
    [w] = _workers(ctx, s, 1, "worker-1w")  # the same app id and data dir as the drain
    data_dir = Path(w.env["BINDWATCH_DATA_DIR"])
    out: dict[str, Any] = {
        "events": drained["n"],
        "distinct_callers": workload.BacklogShape(drained["n"]).distinct_callers(),
    }
    out["after_drain"] = {"rss_mib": drained["rss_mib"], "state_mib": drained["state_mib"]}
    for phase in ("warm_restart", "cold_restore"):
        if phase == "cold_restore":
            shutil.rmtree(data_dir, ignore_errors=True)
        t0 = time.monotonic()
        try:
            w.start(timeout=_drain_timeout(drained["n"]))
            secs = time.monotonic() - t0
            out[phase] = {
                "seconds_to_ready": round(secs, 1),
                "rss_mib": round(services.rss_mib(w.pid), 1),
                "state_mib": round(services.du_mib(data_dir), 1),
            }
        finally:
            w.stop()
    return out


# --- processed rate against offered rate --------------------------------------------------------------------
async def _offer(bootstrap: str, topic: str, records: list[workload.Record], rate: int) -> dict[str, float]:
    """Send ``records`` at ``rate`` per second (open loop: 50 ticks a second, whatever the worker does)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **kafka.SAFE_PRODUCER)
    await asyncio.wait_for(producer.start(), 30)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    sent = 0
    pending = []
    try:
        while sent < len(records):
            due = min(len(records), int((loop.time() - t0) * rate) + 1)
            for key, value, ts, headers in records[sent:due]:
                pending.append(await producer.send(topic, value, key=key, timestamp_ms=ts, headers=headers))
            sent = due
            await asyncio.sleep(0.02)
        await asyncio.wait_for(asyncio.gather(*pending), 60)
    finally:
        await asyncio.wait_for(producer.stop(), 30)
    secs = loop.time() - t0
    return {"sent": sent, "seconds": round(secs, 2), "offered_per_s": round(sent / secs)}


def stream_scaling(ctx: Ctx) -> dict[str, Any]:
    """One worker fed at a growing offered rate: processed rate, backlog left and CPU of worker and broker per
    step (stops after the first step it cannot keep up with); then a py-spy profile of the saturated worker."""
    rates = [250, 500, 1000, 2000, 4000]
    seconds = ctx.pick(20, 8)
    run = kafka_io.tag("scale")
    s = kafka_io.stream_settings(ctx.bootstrap, run)
    kafka_io.setup(s)
    [w] = _workers(ctx, s, 1, "worker-scale")
    steps = []
    total = 0
    with procs.running(w, timeout=180):
        for rate in rates:
            recs = list(workload.backlog(rate * seconds, f"{run}-r{rate}", first=total))
            before = stage_counts([w])
            meter = ctx.meter(worker=w)
            offered = asyncio.run(_offer(ctx.bootstrap, s.events_topic, recs, rate))
            after = stage_counts([w])
            total += len(recs)
            step: dict[str, Any] = {
                "offered_per_s": offered["offered_per_s"],
                "processed_per_s": round((after["did"] - before["did"]) / offered["seconds"]),
                "cpu_cores": meter.read(),
            }
            step["worker_us_per_event"] = per_unit_us(step["cpu_cores"]["worker"], step["processed_per_s"])
            drained = _wait_drained([w], total, timeout=2 * seconds + 10)
            step["backlog_at_end"] = int(total - after["did"])
            step["kept_up"] = drained["complete"] and step["processed_per_s"] >= 0.9 * offered["offered_per_s"]
            steps.append(step)
            if not drained["complete"]:
                break
        prof = _profile_worker(ctx, s, w, run)
    return {"seconds_per_step": seconds, "steps": steps, "profile": prof, "agent_crashes": crashes([w])}


def _profile_worker(ctx: Ctx, s: StreamSettings, w: procs.Service, run: str) -> dict[str, Any]:
    secs = ctx.pick(20, 12)
    kafka_io.produce(ctx.bootstrap, s.events_topic, workload.backlog(secs * 1500, f"{run}-prof", first=10**7))
    out = ctx.out / "profile-worker.txt"
    path = profiling.record(w.pid, secs, out)
    return {"file": out.name, **(profiling.summarise(path) if path else {"error": "py-spy failed"})}


def stream_profile(ctx: Ctx) -> dict[str, Any]:
    """Where one worker's CPU goes while it drains a backlog (issue 13: profile first): py-spy samples the
    worker for the whole drain (started as soon as it is ready, so the start-up is not in it) and
    ``bench.profiling`` summarises the stacks. ``--events`` sizes the backlog (quick 30,000)."""
    n = int(ctx.shared.get("events") or ctx.pick(200_000, 30_000))
    topic, _ = _backlog(ctx, n)
    s = kafka_io.stream_settings(ctx.bootstrap, kafka_io.tag("prof"), topic)
    kafka_io.setup(s)
    (w,) = _workers(ctx, s, 1, "worker-prof")
    out = ctx.out / "profile-drain.txt"
    with procs.running(w, timeout=180):
        secs = int(_drain_timeout(n))
        spy = profiling.start(w.pid, secs, out)
        meter = ctx.meter(workers=w.pids())
        res = _wait_drained([w], n, secs)
        res["cpu_cores"] = cpu = meter.read()
        res["worker_us_per_event"] = per_unit_us(cpu["workers"], res["events_per_s"])
        res["mean_batch_items"] = mean_batches(w)
        spy.send_signal(2)  # py-spy writes what it sampled on SIGINT
        spy.wait(timeout=60)
    res["agent_crashes"] = crashes([w])
    res["log_trouble"] = log_trouble([w])
    res["profile"] = {"file": out.name, **(profiling.summarise(out) if out.exists() else {"error": "py-spy failed"})}
    return res
