"""Gateway benchmarks: max throughput against the no-Kafka baseline (wrk, connection sweep = the scaling curve),
latency at fixed rates (vegeta), and a py-spy profile at saturation.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from bench import kafka_io, load, profiling, services, workload
from bench.context import TOKEN, Ctx, per_unit_us
from gateway.app import PUSH_PATH
from tests.support import procs


def _topics(ctx: Ctx, run: str) -> tuple[str, str]:
    """A fresh events topic (8 partitions, like production) and DLQ for one run."""
    s = kafka_io.stream_settings(ctx.bootstrap, run)
    kafka_io.setup(s)
    return s.events_topic, s.dlq_topic


def _step(ctx: Ctx, gw: procs.Service, c: int, seconds: int, tag: str) -> dict[str, Any]:
    meter = ctx.meter(gateway=gw)
    r: dict[str, Any] = load.wrk(gw.url(""), connections=c, seconds=seconds, tag=tag, token=TOKEN)
    r["cpu_cores"] = cpu = meter.read()
    cpu["others"] = round(max(0.0, cpu["others"] - r["loadgen_cores"]), 2)  # wrk is reported on its own
    r["gateway_us_per_200"] = per_unit_us(cpu["gateway"], r["ok_rps"])
    r["broker_us_per_200"] = per_unit_us(cpu.get("broker", 0.0), r["ok_rps"])
    time.sleep(0.5)
    return r


def _best(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per connection count, the best round: on a shared machine noise only ever slows a run down."""
    by_c: dict[int, dict[str, Any]] = {}
    for s in steps:
        c = s["connections"]
        if c not in by_c or s["ok_rps"] > by_c[c]["ok_rps"]:
            by_c[c] = s
    return [by_c[c] for c in sorted(by_c)]


def gateway_throughput(ctx: Ctx) -> dict[str, Any]:
    """Max pushes/s (wrk, 1..64 connections) with 1 and 2 uvicorn workers, with Kafka and without (baseline).

    The Kafka gateway and the baseline run side by side and are measured alternately at each connection
    count (in rounds, best round kept), so both see the same background load. With Kafka, every 200 must be
    on the topic: the distinct requestIds on the run's events topic are counted against the 200s wrk saw.
    """
    conns = [1, 4, 16, 64]
    seconds = ctx.pick(10, 5)
    rounds = ctx.pick(2, 1)
    configs: dict[str, Any] = {}
    prof: dict[str, Any] | None = None
    for workers in (1, 2):
        run = kafka_io.tag(f"gw{workers}")
        events, dlq = _topics(ctx, run)
        env = ctx.gateway_env(events, dlq)
        gws = {
            f"baseline-{workers}w": services.gateway(
                env, ctx.logs, workers=workers, baseline=True, name=f"gw-base-{workers}w"
            ),
            f"kafka-{workers}w": services.gateway(
                env, ctx.logs, workers=workers, baseline=False, name=f"gw-kafka-{workers}w"
            ),
        }
        raw: dict[str, list[dict[str, Any]]] = {k: [] for k in gws}
        with procs.running(*gws.values(), timeout=60):
            for rnd in range(rounds):
                for c in conns:
                    order = list(gws) if (rnd + c) % 2 == 0 else list(reversed(gws))
                    for name in order:
                        raw[name].append(_step(ctx, gws[name], c, seconds, f"{run}-{name}-{rnd}-c{c}"))
            if workers == 2:
                prof = _profile(ctx, gws["kafka-2w"], run, ctx.pick(15, 10))
        for name, steps in raw.items():
            best = _best(steps)
            top = max(best, key=lambda s: s["ok_rps"])
            configs[name] = {
                "workers": workers,
                "kafka": name.startswith("kafka"),
                "max_ok_rps": top["ok_rps"],
                "best_connections": top["connections"],
                "steps": best,
                "all_rounds": steps,
            }
        census = kafka_io.topic_census(ctx.bootstrap, events)
        ok = sum(s["ok_200"] for s in raw[f"kafka-{workers}w"]) + (prof["ok_200"] if workers == 2 and prof else 0)
        configs[f"kafka-{workers}w"]["topic"] = {
            **census,
            "ok_200_total": ok,
            "every_200_stored": census["distinct_request_ids"] >= ok,
        }
    ratios = {
        f"{w}w": round(configs[f"kafka-{w}w"]["max_ok_rps"] / configs[f"baseline-{w}w"]["max_ok_rps"], 3)
        for w in (1, 2)
    }
    return {
        "seconds_per_step": seconds,
        "rounds": rounds,
        "configs": configs,
        "ratio_kafka_to_baseline": ratios,
        "profile": prof,
    }


def _profile(ctx: Ctx, gw: procs.Service, run: str, seconds: int) -> dict[str, Any]:
    """py-spy on every gateway process while wrk saturates it (64 connections); not part of the measured steps."""
    import threading

    out = ctx.out / "profile-gateway.txt"
    holder: dict[str, Any] = {}

    def drive() -> None:
        holder.update(load.wrk(gw.url(""), connections=64, seconds=seconds + 4, tag=f"{run}-prof", token=TOKEN))

    t = threading.Thread(target=drive)
    t.start()
    time.sleep(2)
    path = profiling.record(gw.pid, seconds, out, subprocesses=True)
    t.join(seconds + 90)
    return {
        "file": out.name,
        "ok_200": holder.get("ok_200", 0),
        "rps_while_profiled": holder.get("ok_rps"),
        **(profiling.summarise(path) if path else {"error": "py-spy failed"}),
    }


def gateway_latency(ctx: Ctx) -> dict[str, Any]:
    """Open-loop latency (vegeta) at 500, 1000 and 2000 pushes/s against the production gateway (2 workers)."""
    rates = [500, 1000, 2000]
    seconds = ctx.pick(60, 10)
    workers = int(ctx.shared.get("latency_workers", 2))
    run = kafka_io.tag("lat")
    events, dlq = _topics(ctx, run)
    gw = services.gateway(ctx.gateway_env(events, dlq), ctx.logs, workers=workers, baseline=False, name="gateway-lat")
    steps = []
    series: dict[str, list[float]] = {}
    with procs.running(gw, timeout=60):
        url = gw.url(f"{PUSH_PATH}?token={TOKEN}")
        for rate in rates:
            pushes = workload.push_mix(rate * seconds, f"{run}-r{rate}", datetime.now(UTC), rate)
            targets = ctx.out / f"targets-{rate}.jsonl"
            workload.write_vegeta_targets(targets, url, pushes)
            meter = ctx.meter(gateway=gw)
            shots = load.vegeta(targets, rate=rate, seconds=seconds, out=ctx.out / f"vegeta-{rate}.bin")
            step: dict[str, Any] = load.latency_summary(shots, rate, seconds)
            step["cpu_cores"] = cpu = meter.read()
            step["gateway_us_per_200"] = per_unit_us(cpu["gateway"], step["ok_200"] / seconds)
            steps.append(step)
            series[str(rate)] = sorted(s.latency * 1000 for s in shots)
            targets.unlink()
            time.sleep(2)
    census = kafka_io.topic_census(ctx.bootstrap, events)
    ok = sum(s["ok_200"] for s in steps)
    ctx.shared["latency_series"] = series
    return {
        "workers": workers,
        "steps": steps,
        "topic": {**census, "ok_200_total": ok, "every_200_stored": census["distinct_request_ids"] >= ok},
    }
