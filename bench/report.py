"""The results as a short Markdown report (headline table with the issue's targets, scaling tables, profile
summaries) and PNG plots (latency distributions, scaling curves, drain progress).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def _v(d: Any, *path: Any, default: Any = None) -> Any:
    for p in path:
        if not isinstance(d, dict | list):
            return default
        try:
            d = d[p]
        except (KeyError, IndexError, TypeError):
            return default
    return d


def _verdict(ok: bool | None) -> str:
    return "—" if ok is None else ("met" if ok else "**missed**")


def _cmp(value: Any, target: float, higher_is_better: bool) -> bool | None:
    if not isinstance(value, int | float):
        return None
    return value >= target if higher_is_better else value <= target


def _us(gt: dict[str, Any], config: str) -> Any:
    """Gateway CPU µs per 200 at the config's best step (a figure a busy machine disturbs far less)."""
    cfg = _v(gt, "configs", config) or {}
    best = [s for s in cfg.get("steps", []) if s["connections"] == cfg.get("best_connections")]
    return best[0].get("gateway_us_per_200") if best else None


def headline(results: dict[str, Any]) -> list[list[str]]:
    b = results.get("benchmarks", {})
    rows: list[list[str]] = []
    gt = b.get("gateway_throughput", {})
    if gt.get("ok"):
        for w in ("1w", "2w"):
            k, base = _v(gt, "configs", f"kafka-{w}", "max_ok_rps"), _v(gt, "configs", f"baseline-{w}", "max_ok_rps")
            ratio = _v(gt, "ratio_kafka_to_baseline", w)
            us_k, us_b = _us(gt, f"kafka-{w}"), _us(gt, f"baseline-{w}")
            rows.append(
                [
                    f"gateway max pushes/s, {w[0]} worker(s)",
                    f"{k:,} /s with Kafka vs {base:,} /s without: **{ratio:.2f}x** "
                    f"(gateway CPU per 200: {us_k} µs vs {us_b} µs)",
                    "≥ 0.6x (aim 0.75x)",
                    _verdict(_cmp(ratio, 0.6, True)),
                ]
            )
        k2 = _v(gt, "configs", "kafka-2w", "max_ok_rps")
        rows.append(["gateway pushes/s, 2 workers", f"{k2:,} /s", "≥ 3,000 /s", _verdict(_cmp(k2, 3000, True))])
        stored = [_v(gt, "configs", f"kafka-{w}", "topic") for w in ("1w", "2w")]
        text = "; ".join(
            f"{t['distinct_request_ids']:,} distinct on topic vs {t['ok_200_total']:,} 200s" for t in stored if t
        )
        ok = all(t and t["every_200_stored"] for t in stored)
        rows.append(["every 200 is on the topic", text, "all", _verdict(ok)])
    gl = b.get("gateway_latency", {})
    if gl.get("ok"):
        for s in gl["steps"]:
            target = {1000: 15.0, 2000: 25.0}.get(s["rate"])
            rows.append(
                [
                    f"gateway latency at {s['rate']:,} /s ({gl['workers']} workers, open loop)",
                    f"p50 {s['p50_ms']} ms, p99 {s['p99_ms']} ms, p99.9 {s['p999_ms']} ms "
                    f"(achieved {s['achieved_rps']:,} /s, {s['errors']} errors)",
                    f"p99 ≤ {target:g} ms" if target else "—",
                    _verdict(_cmp(s["p99_ms"], target, False)) if target else "—",
                ]
            )
    st = b.get("stream_throughput", {})
    if st.get("ok"):
        plain = _v(st, "plain_consumer", "events_per_s")
        for key, label in (("one_worker", "1w"), ("two_workers", "2w")):
            r = st[key]
            per_worker = r["events_per_s"] / r["workers"]
            ratio = _v(st, "ratio_to_plain", label)
            rows.append(
                [
                    f"stream drain of {st['events']:,} events, {r['workers']} worker(s)",
                    f"{r['events_per_s']:,} events/s ({per_worker:,.0f} per worker) in {r['seconds']} s"
                    f"{'' if r['complete'] else ' (INCOMPLETE)'}; plain consumer {plain:,} /s: **{ratio:.3f}x**",
                    "≥ 2,000 /s per worker; ≥ 0.5x plain",
                    _verdict(_cmp(per_worker, 2000, True) and _cmp(ratio, 0.5, True)),
                ]
            )
    pa = b.get("push_to_alert", {})

    def _batches_note(wb: dict[str, Any] | None) -> str:
        if not wb:
            return ""
        parts = [
            f"{stage}: {wb['mean_items'].get(stage, '-')} items, {wb['mean_processing_ms'].get(stage, '-')} ms, "
            f"oldest waited {wb['mean_oldest_record_wait_ms'].get(stage, '-')} ms"
            for stage in ("caller", "did")
        ]
        return "; mean batch " + "; ".join(parts)

    if pa.get("ok"):
        for s in pa["steps"]:
            target = 500.0 if s["rate"] == 1000 else None
            rows.append(
                [
                    f"push-to-alert at {s['rate']:,} /s",
                    f"p50 {s['p50_ms']} ms, p99 {s['p99_ms']} ms over {s['alerts_matched']} alerts "
                    f"(achieved {s['achieved_rps']:,} /s; worker caught up "
                    f"{s['worker_caught_up_seconds_after_attack']} s after the load stopped)"
                    + _batches_note(s.get("worker_batches")),
                    f"p99 ≤ {target:g} ms" if target else "— (contrast)",
                    _verdict(_cmp(s["p99_ms"], target, False)) if target else "—",
                ]
            )
    ss = b.get("stream_state", {})
    if ss.get("ok"):
        rows.append(
            [
                f"worker state after {ss['distinct_callers']:,} distinct callers ({ss['events']:,} events)",
                f"RSS {ss['after_drain']['rss_mib']} MiB, RocksDB {ss['after_drain']['state_mib']} MiB",
                "—",
                "—",
            ]
        )
        rows.append(
            [
                "worker restart to /readyz 200",
                f"with its state {ss['warm_restart']['seconds_to_ready']} s; state deleted (changelog restore) "
                f"{ss['cold_restore']['seconds_to_ready']} s, RSS then {ss['cold_restore']['rss_mib']} MiB",
                "—",
                "—",
            ]
        )
    return rows


def _crashes(res: dict[str, Any]) -> list[str]:
    out = list(res.get("agent_crashes") or [])
    for key in ("one_worker", "two_workers"):
        out += (res.get(key) or {}).get("agent_crashes") or []
    return out


def _table(head: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _cpu(c: dict[str, float] | None) -> str:
    return ", ".join(f"{k} {v}" for k, v in (c or {}).items())


def markdown(results: dict[str, Any]) -> str:
    m = results.get("machine", {})
    b = results.get("benchmarks", {})
    parts = [
        f"# bindwatch benchmarks — {results['mode']} run, {results['started'][:19]}Z",
        f"{m.get('cores')} cores ({m.get('cpu')}), {m.get('memory_gib')} GiB; load average at start "
        f"{' '.join(m.get('loadavg_at_start', []))}; Kafka {m.get('kafka')} on {m.get('broker')}; "
        f"Python {m.get('python')}; commit {m.get('commit')}; total {results.get('wall_seconds')} s.",
        _table(["what", "result", "target (issue #6)", "verdict"], headline(results)),
    ]
    failed = [f"* `{k}` failed: {v.get('error')}" for k, v in b.items() if not v.get("ok")]
    failed += [f"* `{k}`: a Faust agent crashed, numbers invalid: {c}" for k, v in b.items() for c in _crashes(v)]
    if failed:
        parts.append("Failed benchmarks:\n" + "\n".join(failed))
    gt = b.get("gateway_throughput", {})
    if gt.get("ok"):
        rows = []
        for name, cfg in gt["configs"].items():
            for s_ in cfg["steps"]:
                rows.append(
                    [
                        name,
                        s_["connections"],
                        f"{s_['ok_rps']:,}",
                        s_["p50_ms"],
                        s_["p99_ms"],
                        s_["non_2xx"],
                        s_.get("gateway_us_per_200"),
                        s_.get("broker_us_per_200"),
                        s_["loadgen_cores"],
                        _cpu(s_["cpu_cores"]),
                    ]
                )
        parts.append(
            "## Gateway scaling (wrk, closed loop; CPU in cores)\n\n"
            + _table(
                [
                    "config",
                    "connections",
                    "200/s",
                    "p50 ms",
                    "p99 ms",
                    "non-2xx",
                    "gateway µs/200",
                    "broker µs/200",
                    "wrk cores",
                    "CPU cores",
                ],
                rows,
            )
        )
    gl = b.get("gateway_latency", {})
    if gl.get("ok"):
        rows = [
            [
                s["rate"],
                s["achieved_rps"],
                s["p50_ms"],
                s["p90_ms"],
                s["p99_ms"],
                s["p999_ms"],
                s["max_ms"],
                _cpu(s["cpu_cores"]),
            ]
            for s in gl["steps"]
        ]
        parts.append(
            f"## Gateway latency (vegeta, open loop, {gl['workers']} workers)\n\n"
            + _table(["rate /s", "achieved /s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms", "CPU cores"], rows)
        )
    sc = b.get("stream_scaling", {})
    st = b.get("stream_throughput", {})
    if sc.get("ok") or st.get("ok"):
        rows = [
            [
                s["offered_per_s"],
                s["processed_per_s"],
                s["backlog_at_end"],
                s["kept_up"],
                s.get("worker_us_per_event"),
                _cpu(s["cpu_cores"]),
            ]
            for s in sc.get("steps", [])
        ]
        for key in ("one_worker", "two_workers"):
            r = st.get(key)
            if r:
                rows.append(
                    [
                        f"backlog, {r['workers']} worker(s)",
                        r["events_per_s"],
                        "—",
                        "—",
                        r.get("worker_us_per_event"),
                        _cpu(r["cpu_cores"]),
                    ]
                )
        parts.append(
            "## Stream scaling (one worker unless said; events/s through both stages)\n\n"
            + _table(
                ["offered /s", "processed /s", "backlog at end", "kept up", "worker CPU µs/event", "CPU cores"], rows
            )
        )
    for title, prof in (("gateway", _v(gt, "profile")), ("worker", _v(sc, "profile"))):
        if prof and prof.get("samples"):
            rows = [[k, f"{v}%"] for k, v in prof["by_flow"][:8]]
            pk = ", ".join(f"{k} {v}%" for k, v in prof["self_by_package"][:8])
            parts.append(
                f"## Profile: {title} at saturation (py-spy, {prof['samples']} samples, `{prof['file']}`)\n\n"
                f"Self time by package: {pk}\n\n"
                + _table(["where (own code -> library call, or framework task)", "share"], rows)
            )
    parts.append("Plots: `latency.png`, `scaling.png`. Raw numbers: `results.json`.")
    return "\n\n".join(parts) + "\n"


def _percentile_axis(ax: Any, series: dict[str, list[float]], title: str, unit: str) -> None:
    import numpy as np

    for label, values in series.items():
        if not values:
            continue
        v = np.sort(np.asarray(values))
        q = (np.arange(1, len(v) + 1) - 0.5) / len(v)
        ax.plot(1 / (1 - q), v, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ticks = [1, 2, 10, 100, 1000, 10000]
    ax.set_xticks(ticks, ["0", "50", "90", "99", "99.9", "99.99"])
    ax.set_xlabel("percentile")
    ax.set_ylabel(unit)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend()


def plots(out: Path, results: dict[str, Any], shared: dict[str, Any]) -> None:
    b = results.get("benchmarks", {})
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    lat = {f"{k} /s": v for k, v in shared.get("latency_series", {}).items()}
    _percentile_axis(axes[0], lat, "gateway latency, open loop (vegeta)", "ms")
    p2a = {f"{k.rsplit('_', 1)[1]} /s": v for k, v in shared.items() if k.startswith("p2a_series_")}
    _percentile_axis(axes[1], p2a, "push-to-alert latency", "ms")
    fig.tight_layout()
    fig.savefig(out / "latency.png", dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, 3, figsize=(17, 5))
    gt = b.get("gateway_throughput", {})
    for name, cfg in gt.get("configs", {}).items():
        xs = [s["connections"] for s in cfg["steps"]]
        axes[0].plot(xs, [s["ok_rps"] for s in cfg["steps"]], marker="o", label=name)
    axes[0].set_xscale("log", base=2)
    axes[0].set(title="gateway: 200/s vs wrk connections", xlabel="connections", ylabel="pushes/s")
    if axes[0].get_legend_handles_labels()[0]:
        axes[0].legend()
    axes[0].grid(True, alpha=0.3)
    steps = b.get("stream_scaling", {}).get("steps", [])
    if steps:
        xs = [s["offered_per_s"] for s in steps]
        axes[1].plot(xs, [s["processed_per_s"] for s in steps], marker="o", label="processed")
        axes[1].plot(xs, xs, linestyle="--", label="offered")
        axes[1].legend()
    axes[1].set(title="stream: processed vs offered (1 worker)", xlabel="offered events/s", ylabel="events/s")
    axes[1].grid(True, alpha=0.3)
    for label, series in shared.get("drain_series", {}).items():
        axes[2].plot([p[0] for p in series], [min(p[1], p[2]) for p in series], label=label)
    axes[2].set(title="stream: backlog drain (both stages done)", xlabel="s", ylabel="events")
    if axes[2].get_legend_handles_labels()[0]:
        axes[2].legend()
    axes[2].grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "scaling.png", dpi=110)
    plt.close(fig)


def write(out: Path, results: dict[str, Any], shared: dict[str, Any]) -> None:
    (out / "results.md").write_text(markdown(results))
    plots(out, results, shared)
