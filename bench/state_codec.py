"""Micro-benchmark of the stored table value: encode and decode cost of the current format against
version 0 (the format before it), same run, same states. ``python -m bench.state_codec [--quick]``.

Not part of ``python -m bench`` (no broker, seconds to run). Reports, per state size, microseconds per
call and the ratio current/v0 (below 1: faster), and the value sizes. The best of several repeats is kept,
which is what the code costs when the machine lets it run.
"""

from __future__ import annotations

import argparse
import timeit
from collections.abc import Callable

from schemas.alerts import Rule, Severity
from stream import state
from stream.rules import AlertState, Failure, Kind, SubjectState
from tests.fixtures.state.legacy_v0 import dump_v0

T0 = 1_774_782_000_000
W0 = 1_790_000_000_000


def subject(n_events: int, alerts: bool = True) -> SubjectState:
    """A caller with ``n_events`` failures (19-digit requestIds, 11-digit DIDs) and three firing alerts
    (or none: most subjects are numbers seen once)."""
    s = SubjectState(Kind.CALLER, "8613800000001", last_activity_wall=W0)
    s.events = [Failure(T0 + i * 1000, f"16409209406353{i:05d}", f"852900{i % 50:05d}") for i in range(n_events)]
    last = {"count": 3, "distinct": None, "start": T0, "last_ts": T0 + 2000, "samples": ["164092094063530000"] * 3}
    for key, rule, other in (
        ("caller_repeat", Rule.CALLER_REPEAT, None),
        ("caller_scan", Rule.CALLER_SCAN, None),
        ("pair_repeat>85290000001", Rule.PAIR_REPEAT, "85290000001"),
    )[: 3 if alerts else 0]:
        s.alerts[key] = AlertState(rule, other, 1, True, Severity.WARNING, 0, T0, W0, W0, dict(last))
    return s


def best_us(fn: Callable[[], object], number: int, repeat: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.state_codec")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    repeat = 3 if args.quick else 7
    print(f"stored table value: v{state.VERSION} against v0 (µs per call, best of {repeat}; ratio v{state.VERSION}/v0)")
    print(
        f"| failures | bytes v0 | bytes v{state.VERSION} | encode v0 | encode v{state.VERSION} | ratio "
        f"| decode v0 | decode v{state.VERSION} | ratio |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n, alerts in ((1, False), (3, True), (50, True), (500, True), (2000, True)):
        s = subject(n, alerts)
        old, new = dump_v0(s), state.dump(s)
        assert state.load(old) == s == state.load(new)
        number = max(20, 20000 // (n + 10))
        enc0 = best_us(lambda s=s: dump_v0(s), number, repeat)  # type: ignore[misc]
        enc1 = best_us(lambda s=s: state.dump(s), number, repeat)  # type: ignore[misc]
        dec0 = best_us(lambda b=old: state.load(b), number, repeat)  # type: ignore[misc]
        dec1 = best_us(lambda b=new: state.load(b), number, repeat)  # type: ignore[misc]
        label = f"{n}" if alerts else f"{n}, no alert"
        print(
            f"| {label} | {len(old)} | {len(new)} | {enc0:.1f} | {enc1:.1f} | {enc1 / enc0:.2f} "
            f"| {dec0:.1f} | {dec1:.1f} | {dec1 / dec0:.2f} |"
        )


if __name__ == "__main__":
    main()
