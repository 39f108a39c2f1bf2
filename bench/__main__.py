"""``python -m bench [--quick] [names...]`` (use bench/run.sh, which installs the tools first).

Starts its own broker on 127.0.0.1:19592 (or ``BENCH_KAFKA_PORT``) unless KAFKA_BOOTSTRAP_SERVERS is given, runs
the chosen benchmarks in order, and writes ``results.json``, ``results.md`` and PNG plots to
``bench/results/<time>-<mode>/`` (also copied to ``bench/results/latest.*``). A benchmark that fails is recorded
as failed; the rest still run.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from bench import alert_bench, gateway_bench, outage_bench, report, services, stream_bench
from bench.context import Ctx
from bench.machine import describe
from tests.support import procs

BENCHMARKS: dict[str, Callable[[Ctx], dict[str, Any]]] = {
    "gateway_throughput": gateway_bench.gateway_throughput,
    "gateway_latency": gateway_bench.gateway_latency,
    "push_to_alert": alert_bench.push_to_alert,
    "stream_throughput": stream_bench.stream_throughput,
    "stream_state": stream_bench.stream_state,
    "stream_peer_rounds": stream_bench.stream_peer_rounds,
    "stream_outage_cost": stream_bench.stream_outage_cost,
    "stream_settings_ab": stream_bench.stream_settings_ab,
    "stream_storm": stream_bench.stream_storm,
    "stream_restore": stream_bench.stream_restore,
    "stream_failover": stream_bench.stream_failover,
    "stream_scaling": stream_bench.stream_scaling,
    "stream_profile": stream_bench.stream_profile,
    "outage_counting": outage_bench.outage_counting,
}
RESULTS = procs.ROOT / "bench" / "results"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench/run.sh", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="short runs (~10 s per step, 100,000-event backlog)")
    ap.add_argument("--events", type=int, default=None, help="stream backlog size (default 1,000,000; quick 100,000)")
    ap.add_argument("names", nargs="*", metavar="name", help="any of: " + ", ".join(BENCHMARKS) + " (default: all)")
    args = ap.parse_args(argv)
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        ap.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    names = args.names or list(BENCHMARKS)
    mode = "quick" if args.quick else "full"
    out = RESULTS / f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}-{mode}"
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"mode": mode, "started": datetime.now(UTC).isoformat(), "benchmarks": {}}
    t_all = time.monotonic()
    broker = services.broker()
    ctx = Ctx(broker, args.quick, out)
    if args.events:
        ctx.shared["events"] = args.events
    try:
        results["machine"] = describe(broker)
        for name in names:
            print(f"bench: {name} ...", flush=True)
            t0 = time.monotonic()
            try:
                res = BENCHMARKS[name](ctx)
                res["ok"] = True
            except Exception as exc:  # one failed benchmark must not lose the others' results
                res = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
                print(f"bench: {name} FAILED: {exc}", file=sys.stderr, flush=True)
            res["wall_seconds"] = round(time.monotonic() - t0, 1)
            results["benchmarks"][name] = res
            _write(out, results)
            print(f"bench: {name} done in {res['wall_seconds']} s", flush=True)
    finally:
        broker.stop()
        shutil.rmtree(out / "state", ignore_errors=True)  # RocksDB dirs (sizes are in the results) can be large
        results["wall_seconds"] = round(time.monotonic() - t_all, 1)
        _write(out, results)
    report.write(out, results, ctx.shared)
    for f in ("results.json", "results.md"):
        shutil.copyfile(out / f, RESULTS / f"latest-{f}")
    print((out / "results.md").read_text())
    print(f"bench: results in {out}")
    return 0 if all(r.get("ok") for r in results["benchmarks"].values()) else 1


def _write(out: Path, results: dict[str, Any]) -> None:
    (out / "results.json").write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    sys.exit(main())
