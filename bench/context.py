"""What every benchmark gets: the broker, the mode, where to write, the bench token, and CPU-meter helpers."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.services import Broker, CpuMeter, total_cpu_busy
from tests.support.procs import Service

TOKEN = "bench-token-0123456789abcdef"


@dataclass
class Ctx:
    broker: Broker
    quick: bool
    out: Path
    shared: dict[str, Any] = field(default_factory=dict)  # hand-over between benchmarks of one run

    @property
    def logs(self) -> Path:
        p = self.out / "logs"
        p.mkdir(parents=True, exist_ok=True)
        return p

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap

    def pick(self, full: Any, quick: Any) -> Any:
        return quick if self.quick else full

    def gateway_env(self, events_topic: str, dlq_topic: str) -> dict[str, str]:
        """Production settings: token required, dead-letter mode, acks=all idempotent producer (the default)."""
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "BINDWATCH_PUSH_TOKENS": TOKEN,
            "BINDWATCH_EVENTS_TOPIC": events_topic,
            "BINDWATCH_DLQ_TOPIC": dlq_topic,
            "BINDWATCH_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "INFO"),
        }

    def meter(self, **procs: Service | list[int]) -> Meter:
        groups: dict[str, list[int]] = {}
        for name, p in procs.items():
            groups[name] = p if isinstance(p, list) else p.pids()
        if self.broker.pid:
            groups["broker"] = [self.broker.pid]
        return Meter(groups)


class Meter:
    """CPU (cores) of each group over an interval, plus the whole machine (others' load shows up there)."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.cpu = CpuMeter(groups)
        self.busy0, self.total0 = total_cpu_busy()

    def read(self) -> dict[str, float]:
        out = self.cpu.cores()
        busy, total = total_cpu_busy()
        ncpu = os.cpu_count() or 1
        out["machine"] = machine = round(ncpu * (busy - self.busy0) / max(total - self.total0, 1), 2)
        # CPU used by none of the measured groups: the load generator and other work on this shared machine.
        out["others"] = round(max(0.0, machine - sum(v for k, v in out.items() if k != "machine")), 2)
        return out


def per_unit_us(cores: float, per_s: float) -> float | None:
    """CPU microseconds per unit of work (push, event): far less sensitive to a busy machine than a rate."""
    return round(cores * 1e6 / per_s) if per_s > 0 else None
