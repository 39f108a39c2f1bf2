"""Stream benchmarks: drain a backlog through the full topology (1 and 2 workers) against a plain decoding
consumer; state size, memory and changelog recovery; processed rate against offered rate; a worker profile.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench import kafka_io, peer, profiling, services, workload
from bench.context import Ctx, per_unit_us
from stream.compat import changelog_topic_name
from stream.config import StreamSettings
from stream.counting import OUTAGE_TABLE
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


def gc_seconds(w: procs.Service) -> dict[str, float]:
    """Seconds the worker spent in Python's cycle collector so far, by the oldest generation collected."""
    status, body = procs.http_get(w.url("/metrics"), timeout=5)
    out: dict[str, float] = {}
    for line in body.decode().splitlines() if status == 200 else []:
        if line.startswith("bindwatch_stream_gc_seconds_total{"):
            labels, _, value = line.partition("} ")
            out[dict(_LABELS.findall(labels)).get("generation", "")] = float(value)
    return out


def histogram_totals(w: procs.Service, name: str) -> dict[str, tuple[float, float]]:
    """(sum, count) by stage of the worker's histogram ``name``, from its /metrics."""
    status, body = procs.http_get(w.url("/metrics"), timeout=5)
    out: dict[str, list[float]] = {}
    for line in body.decode().splitlines() if status == 200 else []:
        for suffix, at in (("_sum{", 0), ("_count{", 1)):
            if line.startswith(name + suffix):
                labels, _, value = line.partition("} ")
                out.setdefault(dict(_LABELS.findall(labels)).get("stage", ""), [0.0, 0.0])[at] = float(value)
    return {stage: (v[0], v[1]) for stage, v in out.items()}


def histogram_means(
    after: dict[str, tuple[float, float]], before: dict[str, tuple[float, float]] | None = None, scale: float = 1.0
) -> dict[str, float]:
    """Mean by stage of what a histogram observed between two ``histogram_totals`` readings."""
    out = {}
    for stage, (total, count) in after.items():
        t0, c0 = (before or {}).get(stage, (0.0, 0.0))
        if count > c0:
            out[stage] = round((total - t0) / (count - c0) * scale, 1)
    return out


def mean_batches(w: procs.Service) -> dict[str, float]:
    """Mean items per batch by stage, from the worker's ``bindwatch_stream_batch_items`` histogram."""
    return histogram_means(histogram_totals(w, "bindwatch_stream_batch_items"))


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


POLL_SECONDS = 0.5
"""How often a drain's counts are read in its middle."""
FINE_POLL_SECONDS = 0.05
"""How often they are read until its first event is seen and from ``FINE_FROM`` of its events on: its start and end
are known to within this. At 0.5 s throughout, a 100,000-event drain (~4 s here) was timed to within ±12%, and a
round's ratio moved by that much. A read costs the worker one /metrics page: ~10 more per drain than before."""
FINE_FROM = 0.9


def _wait_drained(ws: list[procs.Service], n: int, timeout: float) -> dict[str, Any]:
    """Poll /metrics until both stages saw ``n`` events, every ``FINE_POLL_SECONDS`` around the drain's start
    and end and every ``POLL_SECONDS`` between. Times are from the first poll that sees an event; the rate counts
    only the events after it (``first_count``, those it already saw, are left out: a stage counts a batch once it
    has processed it, so they took time before the clock started). The quixstreams peer is timed by its own
    stamps from its first event (``bench.peer``), so this cannot flatter the worker against it."""
    t0 = time.monotonic()
    t_first: float | None = None
    first_count = 0.0
    t_caller: float | None = None
    series: list[tuple[float, float, float]] = []
    counts = {"caller": 0.0, "did": 0.0}
    while time.monotonic() - t0 < timeout:
        counts = stage_counts(ws)
        now = time.monotonic()
        if t_first is None and counts["caller"] > 0:
            t_first, first_count = now, counts["caller"]
        if t_caller is None and counts["caller"] >= n:
            t_caller = now
        series.append((round(now - t0, 2), counts["caller"], counts["did"]))
        if counts["caller"] >= n and counts["did"] >= n:
            break
        fine = t_first is None or min(counts["caller"], counts["did"]) >= FINE_FROM * n
        time.sleep(FINE_POLL_SECONDS if fine else POLL_SECONDS)
    end = time.monotonic()
    start = t_first or t0
    done = counts["caller"] >= n and counts["did"] >= n
    secs = end - start
    return {
        "complete": done,
        "seconds": round(secs, 1),
        "polled_seconds": round(end - t0, 2),  # from the first poll: what a meter read around this call covers
        "events_per_s": round((min(counts["caller"], counts["did"], n) - first_count) / secs) if secs > 0 else 0,
        "first_count": first_count,
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
        main0 = [services.cpu_seconds(w.pid, w.pid) for w in ws]
        gc0 = [gc_seconds(w) for w in ws]
        res = _wait_drained(ws, n, _drain_timeout(n))
        # the share of the drain each worker spent in the cycle collector, by the oldest generation collected
        res["gc_share"] = [
            {g: round((t - before.get(g, 0.0)) / max(res["polled_seconds"], 0.1), 3) for g, t in gc_seconds(w).items()}
            for w, before in zip(ws, gc0, strict=True)
        ]
        res["cpu_cores"] = cpu = meter.read()
        # The share of the drain each worker's main thread (the event loop both stages compute on) was on a
        # core: near 1, the one thread is the bound; well below, something it waits for is.
        res["main_thread_busy"] = [
            round((services.cpu_seconds(w.pid, w.pid) - c0) / max(res["polled_seconds"], 0.1), 2)
            for w, c0 in zip(ws, main0, strict=True)
        ]
        res["worker_us_per_event"] = per_unit_us(cpu["workers"], res["events_per_s"])
        res["broker_us_per_event"] = per_unit_us(cpu.get("broker", 0.0), res["events_per_s"])
        res["rss_mib"] = [round(services.rss_mib(w.pid), 1) for w in ws]
        res["mean_batch_items"] = [mean_batches(w) for w in ws]
        # Share of the drain each stage spent in its batches (processing and the acknowledgements it awaits):
        # near 1, that stage is the chain the drain waits on; well below 1 for both, the input is.
        res["stage_busy"] = [
            {k: round(total / max(res["seconds"], 0.1), 2) for k, (total, _n) in busy.items()}
            for busy in (histogram_totals(w, "bindwatch_stream_batch_seconds") for w in ws)
        ]
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


def stream_peer_rounds(ctx: Ctx) -> dict[str, Any]:
    """Issue 13's ratio, one worker against the quixstreams peer (caller + DID stages), measured in alternated
    rounds (peer, bindwatch, peer, bindwatch, ...) on one backlog: on this machine the peer's own rate moved
    1.6x between runs minutes apart, so one pair of drains says little. Reports each round's ratio, their
    median, and the ratio of the best drain of each side. ``BENCH_PEER_ROUNDS`` rounds (default 3);
    ``BENCH_PEER_ORDER=worker-first`` drains the worker first in each round (the peer's first drain of a run
    has been its fastest in every run so far: this tells the position from the peer); ``alternate`` swaps the
    order every round (peer first in rounds 0, 2, ...; with an even number of rounds each side drains first
    equally often, since each drains 5-10% slower second: the median is then the order-fair figure)."""
    n = int(ctx.shared.get("events") or ctx.pick(200_000, 50_000))
    rounds_n = int(os.environ.get("BENCH_PEER_ROUNDS", "3"))
    if rounds_n < 1:
        raise ValueError(f"BENCH_PEER_ROUNDS must be at least 1, got {rounds_n}")
    topic, _ = _backlog(ctx, n)
    peer_dir = ctx.out / "peer-rounds"
    peer_dir.mkdir(parents=True, exist_ok=True)
    rounds: list[dict[str, Any]] = []
    order = os.environ.get("BENCH_PEER_ORDER", "peer-first")
    for i in range(rounds_n):
        worker_first = worker_drains_first(order, i)
        if worker_first:
            ours, _ = _drain(ctx, topic, n, 1, label=f"r{i}")
        quix = peer.drain(ctx.bootstrap, topic, n, peer_dir, timeout=_drain_timeout(n))
        if not worker_first:
            ours, _ = _drain(ctx, topic, n, 1, label=f"r{i}")
        rounds.append(
            {
                "first": "worker" if worker_first else "peer",
                "peer_events_per_s": quix["events_per_s"],
                "peer_us_per_event": quix["peer_us_per_event"],
                "events_per_s": ours["events_per_s"],
                "worker_us_per_event": ours["worker_us_per_event"],
                "complete": ours["complete"],
                "main_thread_busy": ours["main_thread_busy"][0],
                "stage_busy": ours["stage_busy"][0],
                "broker_us_per_event": ours["broker_us_per_event"],
                "cpu_cores": ours["cpu_cores"],
                "gc_share": ours["gc_share"][0],
                "series": ours["series"],
                "log_trouble": ours.get("log_trouble"),
                "ratio": round(ours["events_per_s"] / max(quix["events_per_s"], 1), 3),
            }
        )
    ratios = sorted(r["ratio"] for r in rounds)
    best_peer = max(r["peer_events_per_s"] for r in rounds)
    best_ours = max(r["events_per_s"] for r in rounds)
    by_first = {side: sorted(r["ratio"] for r in rounds if r["first"] == side) for side in ("peer", "worker")}
    return {
        "events": n,
        "order": order,
        "rounds": rounds,
        "ratio_median": median(ratios),
        "ratio_median_by_first": {side: median(rs) for side, rs in by_first.items() if rs},
        "ratio_min": ratios[0],
        "ratio_max": ratios[-1],
        "ratio_best_to_best": round(best_ours / max(best_peer, 1), 3),
        "cpu_per_event_median": sorted(
            round(r["worker_us_per_event"] / max(r["peer_us_per_event"], 0.1), 2) for r in rounds
        )[len(rounds) // 2],
    }


def worker_drains_first(order: str, i: int) -> bool:
    """Whether round ``i`` of ``stream_peer_rounds`` drains the worker first, for ``BENCH_PEER_ORDER``."""
    if order == "peer-first":
        return False
    if order == "worker-first":
        return True
    if order == "alternate":
        return i % 2 == 1
    raise ValueError(f"BENCH_PEER_ORDER is peer-first, worker-first or alternate; got {order!r}")


def median(values: list[float]) -> float:
    """The median (of an even count: the mean of the middle two), rounded like the ratios."""
    s = sorted(values)
    mid = len(s) // 2
    return round(s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2, 3)


def stream_outage_cost(ctx: Ctx) -> dict[str, Any]:
    """What outage detection's global counting costs (issue 14, target >= 0.95x): one worker drains the same
    backlog with BINDWATCH_OUTAGE_DETECTION off (the baseline) and on, alternated (off, on, off, on: the
    machine drifts between drains), in the same run; the best drain of each is compared."""
    n = int(ctx.shared.get("events") or ctx.pick(200_000, 50_000))
    topic, _ = _backlog(ctx, n)
    rounds: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    for i in range(2):
        for arm in ("off", "on"):
            res, _ = _drain(ctx, topic, n, 1, {"BINDWATCH_OUTAGE_DETECTION": str(arm == "on").lower()}, f"{arm}{i}")
            rounds[arm].append(res)
    off = max(rounds["off"], key=lambda r: r["events_per_s"])
    on = max(rounds["on"], key=lambda r: r["events_per_s"])
    return {
        "events": n,
        "counting_off": off,
        "counting_on": on,
        "rounds": {arm: [(r["events_per_s"], r["worker_us_per_event"]) for r in rs] for arm, rs in rounds.items()},
        "ratio_on_to_off": round(on["events_per_s"] / max(off["events_per_s"], 1), 3),
        "cpu_per_event_on_to_off": round(on["worker_us_per_event"] / max(off["worker_us_per_event"], 0.1), 3),
    }


def parse_ab(spec: str) -> dict[str, str]:
    """``BENCH_AB``'s worker settings: space-separated ``NAME=value`` pairs, each a ``BINDWATCH_`` variable."""
    out: dict[str, str] = {}
    for pair in spec.split():
        name, sep, value = pair.partition("=")
        if not sep or not name.startswith("BINDWATCH_"):
            raise ValueError(f"BENCH_AB takes BINDWATCH_NAME=value pairs separated by spaces; got {pair!r}")
        out[name] = value
    if not out:
        raise ValueError("BENCH_AB is empty: give the settings to compare, e.g. BENCH_AB='BINDWATCH_BATCH_SIZE=2000'")
    return out


def stream_settings_ab(ctx: Ctx) -> dict[str, Any]:
    """One worker with the settings in ``BENCH_AB`` (arm B) against one with the defaults (arm A, the
    baseline), alternated on one backlog (A, B, A, B, ...; ``BENCH_AB_ROUNDS``, default 3): each round's
    events/s and CPU-per-event ratios of B to A, and their medians. For settings, not code: the two arms run
    the same checkout."""
    n = int(ctx.shared.get("events") or ctx.pick(200_000, 50_000))
    b_env = parse_ab(os.environ.get("BENCH_AB", ""))
    rounds_n = int(os.environ.get("BENCH_AB_ROUNDS", "3"))
    if rounds_n < 1:
        raise ValueError(f"BENCH_AB_ROUNDS must be at least 1, got {rounds_n}")
    topic, _ = _backlog(ctx, n)
    rounds: list[dict[str, Any]] = []
    for i in range(rounds_n):
        a, _ = _drain(ctx, topic, n, 1, label=f"a{i}")
        b, _ = _drain(ctx, topic, n, 1, b_env, label=f"b{i}")
        rounds.append(
            {
                "a": (a["events_per_s"], a["worker_us_per_event"], a["mean_batch_items"][0]),
                "b": (b["events_per_s"], b["worker_us_per_event"], b["mean_batch_items"][0]),
                "complete": a["complete"] and b["complete"],
                "log_trouble": {"a": a.get("log_trouble"), "b": b.get("log_trouble")},
                "gc_share": {"a": a["gc_share"][0], "b": b["gc_share"][0]},
                "main_thread_busy": {"a": a["main_thread_busy"][0], "b": b["main_thread_busy"][0]},
                "ratio": round(b["events_per_s"] / max(a["events_per_s"], 1), 3),
                "cpu_ratio": round(b["worker_us_per_event"] / max(a["worker_us_per_event"], 0.1), 3),
            }
        )
    ratios = sorted(r["ratio"] for r in rounds)
    cpu = sorted(r["cpu_ratio"] for r in rounds)
    return {
        "events": n,
        "b_settings": b_env,
        "rounds": rounds,
        "ratio_median": ratios[len(ratios) // 2],
        "ratio_min": ratios[0],
        "ratio_max": ratios[-1],
        "cpu_ratio_median": cpu[len(cpu) // 2],
        "ok": all(r["complete"] for r in rounds),
    }


def stream_storm(ctx: Ctx) -> dict[str, Any]:
    """A storm (N events to one DID from 2,000 callers; issue 13: 20,000) against the uniform backlog of the
    same size (the baseline), each drained by one fresh worker in the same run; target >= 0.9x.

    ``BENCH_STORM_ROUNDS`` rounds (default 3), the order swapped every round (uniform first in rounds 0, 2,
    ...): a single uniform drain moved 10,800-14,900 events/s between runs a minute apart, and the ratio moved
    with it. Reports each round's ratio, their median and the ratio of the medians."""
    n = int(ctx.shared.get("events") or ctx.pick(40_000, 20_000))
    rounds_n = int(os.environ.get("BENCH_STORM_ROUNDS", "3"))
    if rounds_n < 1:
        raise ValueError(f"BENCH_STORM_ROUNDS must be at least 1, got {rounds_n}")
    uniform_topic, _ = _backlog(ctx, n)
    run = kafka_io.tag("storm")
    st = kafka_io.stream_settings(ctx.bootstrap, run)
    kafka_io.setup(st)
    kafka_io.produce(ctx.bootstrap, st.events_topic, workload.storm(n, run))
    rounds: list[dict[str, Any]] = []
    for i in range(rounds_n):
        storm_first = worker_drains_first("alternate", i)
        if storm_first:
            storm, _ = _drain(ctx, st.events_topic, n, 1, label=f"storm{i}")
        uniform, _ = _drain(ctx, uniform_topic, n, 1, label=f"uniform{i}")
        if not storm_first:
            storm, _ = _drain(ctx, st.events_topic, n, 1, label=f"storm{i}")
        rounds.append(
            {
                "first": "storm" if storm_first else "uniform",
                "uniform": uniform,
                "storm": storm,
                "ratio": round(storm["events_per_s"] / max(uniform["events_per_s"], 1), 3),
                "cpu_ratio": round(storm["worker_us_per_event"] / max(uniform["worker_us_per_event"], 0.1), 3),
            }
        )
    storm_rates = [r["storm"]["events_per_s"] for r in rounds]
    uniform_rates = [r["uniform"]["events_per_s"] for r in rounds]
    return {
        "events": n,
        "storm_callers": 2000,
        "rounds": rounds,
        "summary": [
            (r["first"], r["uniform"]["events_per_s"], r["storm"]["events_per_s"], r["ratio"], r["cpu_ratio"])
            for r in rounds
        ],
        "ratio_median": median([r["ratio"] for r in rounds]),
        "ratio_of_medians": round(median(storm_rates) / max(median(uniform_rates), 1), 3),
        "cpu_per_event_storm_to_uniform_median": median([r["cpu_ratio"] for r in rounds]),
        "storm_log_trouble": [r["storm"].get("log_trouble") for r in rounds],
    }


def _drained(ctx: Ctx) -> dict[str, Any]:
    """The one-worker state ``stream_throughput`` left (same app id and data dir), else a drain made now."""
    drained: dict[str, Any] | None = ctx.shared.get("drained")
    if drained is None:  # run on its own: make the state first
        n = int(ctx.shared.get("events") or ctx.pick(1_000_000, 100_000))
        topic, _ = _backlog(ctx, n)
        one, s1 = _drain(ctx, topic, n, 1)
        drained = {"settings": s1, "n": n, "rss_mib": one["rss_mib"][0], "state_mib": one["state_mib"][0]}
    return drained


def stream_state(ctx: Ctx) -> dict[str, Any]:
    """RSS and on-disk state after the backlog's distinct callers; restart time with the state (warm) and
    after deleting it (cold: the tables are restored from their changelogs)."""
    drained = _drained(ctx)
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


# --- cold restore: Faust's record-by-record recovery against the bulk restore (issue 17) ----------------------
async def _changelog_census(bootstrap: str, s: StreamSettings) -> dict[str, int]:
    """Records and bytes (key + value) on the tables' changelogs: what a cold restore reads."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None, fetch_max_bytes=64 * 1024 * 1024
    )
    await asyncio.wait_for(consumer.start(), 30)
    records = size = 0
    try:
        tps = [
            TopicPartition(changelog_topic_name(s.app_id, t), p)
            for t, parts in (("callers", s.partitions), ("dids", s.partitions), (OUTAGE_TABLE, 1))
            for p in range(parts)
        ]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        left = {tp for tp in tps if ends[tp] > 0}
        while left:
            for recs in (await consumer.getmany(*left, timeout_ms=1000, max_records=50_000)).values():
                records += len(recs)
                size += sum(len(r.key or b"") + len(r.value or b"") for r in recs)
            left = {tp for tp in left if await consumer.position(tp) < ends[tp]}
    finally:
        await asyncio.wait_for(consumer.stop(), 30)
    return {"records": records, "bytes": size}


def _cold_start(ctx: Ctx, s: StreamSettings, name: str, extra: dict[str, str], timeout: float) -> dict[str, Any]:
    """Start a worker of app ``s`` on an empty data dir; seconds until /readyz 200 and its CPU meanwhile."""
    [w] = _workers(ctx, s, 1, name, extra)
    shutil.rmtree(Path(w.env["BINDWATCH_DATA_DIR"]), ignore_errors=True)
    t0 = time.monotonic()
    try:
        w.start(timeout=timeout)
        secs = time.monotonic() - t0
        cpu = services.cpu_seconds(w.pid)
        return {
            "seconds_to_ready": round(secs, 1),
            "worker_cpu_seconds": round(cpu, 1),
            "rss_mib": round(services.rss_mib(w.pid), 1),
        }
    finally:
        w.stop()
        shutil.rmtree(Path(w.env["BINDWATCH_DATA_DIR"]), ignore_errors=True)


def stream_restore(ctx: Ctx) -> dict[str, Any]:
    """Cold restore (data dir deleted) of the same changelogs, alternately by Faust's record-by-record recovery
    (the **baseline**, ``BINDWATCH_BULK_RESTORE_SECONDS=0``) and by the bulk restore (the default), in the same
    run; ``rounds`` pairs (quick 1). Records/s counts every changelog record read."""
    drained = _drained(ctx)
    s: StreamSettings = drained["settings"]
    census = asyncio.run(_changelog_census(ctx.bootstrap, s))
    timeout = 120 + census["records"] / 1000  # Faust's path at a tenth of today's rate still fits
    runs: dict[str, list[dict[str, Any]]] = {"faust": [], "bulk": []}
    for r in range(ctx.pick(2, 1)):
        for how, seconds in (("faust", "0"), ("bulk", "60")):
            res = _cold_start(ctx, s, f"restore-{how}-{r}", {"BINDWATCH_BULK_RESTORE_SECONDS": seconds}, timeout)
            res["records_per_s"] = round(census["records"] / res["seconds_to_ready"])
            res["cpu_us_per_record"] = round(res["worker_cpu_seconds"] * 1e6 / census["records"], 1)
            runs[how].append(res)
    best = {how: min(rs, key=lambda x: x["seconds_to_ready"]) for how, rs in runs.items()}
    return {
        "events": drained["n"],
        "distinct_callers": workload.BacklogShape(drained["n"]).distinct_callers(),
        "changelog": census,
        "runs": runs,
        "speedup": round(best["faust"]["seconds_to_ready"] / best["bulk"]["seconds_to_ready"], 2),
        "cpu_ratio": round(best["faust"]["worker_cpu_seconds"] / max(best["bulk"]["worker_cpu_seconds"], 0.1), 2),
    }


# --- worker failover with and without standby replicas (issue 17) ---------------------------------------------
async def _answers(urls: dict[str, str]) -> dict[str, int | None]:
    """``retainedFailures`` of each caller (None when the worker does not answer 200)."""
    out: dict[str, int | None] = {}
    sem = asyncio.Semaphore(32)
    async with httpx.AsyncClient(timeout=5) as client:

        async def one(caller: str, url: str) -> None:
            async with sem:
                try:
                    r = await client.get(url)
                    out[caller] = r.json().get("retainedFailures") if r.status_code == 200 else None
                except httpx.HTTPError:
                    out[caller] = None

        await asyncio.gather(*(one(c, u) for c, u in urls.items()))
    return out


def _failover_sample(counts: Counter[str], size: int) -> list[str]:
    """Callers spread over the backlog (so over every partition): mostly once-seen, a tenth repeat callers."""
    repeat = sorted(c for c, k in counts.items() if k > 1)
    once = sorted(c for c, k in counts.items() if k == 1)
    n_rep = min(len(repeat), size // 10)
    picks = repeat[:: max(1, len(repeat) // max(n_rep, 1))][:n_rep]
    picks += once[:: max(1, len(once) // (size - n_rep))][: size - n_rep]
    return picks


def _one_failover(
    ctx: Ctx, topic: str, n: int, counts: Counter[str], sample: list[str], standbys: int, bulk: bool
) -> dict[str, Any]:
    label = f"sb{standbys}{'' if bulk else '-nobulk'}"
    s = kafka_io.stream_settings(ctx.bootstrap, kafka_io.tag(f"fo{label}"), topic)
    kafka_io.setup(s)
    extra = {
        "BINDWATCH_STANDBY_REPLICAS": str(standbys),
        "BINDWATCH_SESSION_TIMEOUT_SECONDS": str(FAILOVER_SESSION_TIMEOUT),
        "BINDWATCH_BULK_RESTORE_SECONDS": "60" if bulk else "0",
    }
    survivor, victim = ws = _workers(ctx, s, 2, f"failover-{label}", extra)
    out: dict[str, Any] = {"standby_replicas": standbys, "bulk_restore": bulk}
    with procs.running(*ws, timeout=180):
        meter = ctx.meter(survivor=survivor, victim=victim)
        drain = _wait_drained(ws, n, _drain_timeout(n))
        cpu = meter.read()
        out["drain"] = {k: drain[k] for k in ("complete", "seconds", "events_per_s")}
        out["drain"]["cpu_cores"] = cpu
        out["drain"]["worker_us_per_event"] = per_unit_us(cpu["survivor"] + cpu["victim"], drain["events_per_s"])
        out["drain"]["broker_us_per_event"] = per_unit_us(cpu.get("broker", 0.0), drain["events_per_s"])
        time.sleep(5)  # let the standbys read the last changelog records
        out["rss_mib"] = [round(services.rss_mib(w.pid), 1) for w in ws]
        out["state_mib"] = [round(services.du_mib(Path(w.env["BINDWATCH_DATA_DIR"])), 1) for w in ws]
        urls = {c: survivor.url(f"/v1/callers/{c}") for c in sample}
        before = asyncio.run(_answers(urls))
        out["sample"] = len(sample)
        out["before_kill_equal_to_sent"] = sum(before[c] == counts[c] for c in sample)
        victim.kill()  # SIGKILL: a node lost; then its disk
        t0 = time.monotonic()
        shutil.rmtree(Path(victim.env["BINDWATCH_DATA_DIR"]), ignore_errors=True)
        deadline = t0 + 120 + n / 1000
        wrong_seen = False
        t_unready = t_ready = t_exact = None
        polls: list[float] = []
        while time.monotonic() < deadline:
            t_poll = time.monotonic()
            got = asyncio.run(_answers(urls))
            polls.append(time.monotonic() - t_poll)
            now = time.monotonic() - t0
            status, _ = procs.http_get(survivor.url("/readyz"), timeout=5)
            if status != 200 and t_unready is None:
                t_unready = now
            if status == 200 and t_unready is not None and t_ready is None:
                t_ready = now
            exact = all(got[c] == before[c] for c in sample)
            if not exact:
                wrong_seen = True
            elif wrong_seen and t_ready is not None:
                t_exact = now
                break
            time.sleep(0.2)
        out["failover"] = {
            "session_timeout_s": FAILOVER_SESSION_TIMEOUT,
            "seconds_to_rebalance_seen": None if t_unready is None else round(t_unready, 1),
            "seconds_to_ready": None if t_ready is None else round(t_ready, 1),
            "seconds_to_exact_counts": None if t_exact is None else round(t_exact, 1),
            "polls": len(polls),
            "poll_seconds_median": round(sorted(polls)[len(polls) // 2], 2) if polls else None,
            "survivor_rss_mib": round(services.rss_mib(survivor.pid), 1),
        }
    out["changelog"] = asyncio.run(_changelog_census(ctx.bootstrap, s))
    out["agent_crashes"] = crashes(ws)
    return out


FAILOVER_SAMPLE = 100
"""Callers queried per poll (a poll must stay short on a loaded machine: it sets the resolution)."""
FAILOVER_SESSION_TIMEOUT = 10
"""A SIGKILLed worker leaves the group only when its session times out: the floor of any failover time."""


def stream_failover(ctx: Ctx) -> dict[str, Any]:
    """Two workers on N events' state; one SIGKILLed and its data dir deleted; seconds until the survivor
    answers a sample of callers from every partition with the counts they had before, with
    ``BINDWATCH_STANDBY_REPLICAS=1`` and (the baseline: a full restore of the moved partitions) 0, in the same
    run (and, for reference, with 0 and Faust's record-by-record restore, ``BINDWATCH_BULK_RESTORE_SECONDS=0``);
    and what the standbys cost (CPU, RSS, state on disk, the changelog bytes each standby reads)."""
    n = int(ctx.shared.get("events") or ctx.pick(1_000_000, 100_000))
    run = kafka_io.tag("backlog")
    sb = kafka_io.stream_settings(ctx.bootstrap, run)
    kafka_io.setup(sb)
    records = list(workload.backlog(n, run))
    counts = Counter(r[0].decode() for r in records)
    kafka_io.produce(ctx.bootstrap, sb.events_topic, records)
    sample = _failover_sample(counts, FAILOVER_SAMPLE)
    # The reference (yesterday's record-by-record restore) takes minutes at 1,000,000 events; the baseline of
    # the standby figure is the bulk restore below. BENCH_FAILOVER_FAUST_RESTORE=0 leaves the reference out.
    today = (
        _one_failover(ctx, sb.events_topic, n, counts, sample, 0, bulk=False)
        if os.environ.get("BENCH_FAILOVER_FAUST_RESTORE", "1") != "0"
        else None
    )
    without = _one_failover(ctx, sb.events_topic, n, counts, sample, 0, bulk=True)
    with_standby = _one_failover(ctx, sb.events_topic, n, counts, sample, 1, bulk=True)

    def ratio(a: float | None, b: float | None) -> float | None:
        return round(a / b, 2) if a and b else None

    return {
        "events": n,
        "without_standby_faust_restore": today,
        "without_standby": without,
        "with_standby": with_standby,
        "failover_speedup": ratio(
            without["failover"]["seconds_to_exact_counts"], with_standby["failover"]["seconds_to_exact_counts"]
        ),
        "cost": {
            "cpu_per_event": ratio(
                with_standby["drain"]["worker_us_per_event"], without["drain"]["worker_us_per_event"]
            ),
            "rss": ratio(sum(with_standby["rss_mib"]), sum(without["rss_mib"])),
            "state_on_disk": ratio(sum(with_standby["state_mib"]), sum(without["state_mib"])),
            "broker_us_per_event": ratio(
                with_standby["drain"]["broker_us_per_event"], without["drain"]["broker_us_per_event"]
            ),
            "extra_broker_egress_bytes": with_standby["changelog"]["bytes"],
        },
    }


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
    storm = os.environ.get("BENCH_PROFILE_WORKLOAD", "backlog") == "storm"  # the stream_storm workload instead
    if storm:
        s = kafka_io.stream_settings(ctx.bootstrap, kafka_io.tag("prof-storm"))
        kafka_io.setup(s)
        kafka_io.produce(ctx.bootstrap, s.events_topic, workload.storm(n, s.app_id))
    else:
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
    res["workload"] = "storm" if storm else "backlog"
    return res
