"""Start and stop what the benchmarks measure: the broker, gateways and workers as processes; CPU and RSS probes."""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support import procs
from tests.support.broker import LocalBroker
from tests.support.procs import Service

BENCH_KAFKA_PORT = int(os.environ.get("BENCH_KAFKA_PORT", "19592"))  # the tests use 19192/19292 by default
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- the broker ------------------------------------------------------------------------------------------
@dataclass
class Broker:
    bootstrap: str
    pid: int | None  # the java process, for CPU sampling (None for a broker we did not start)
    local: LocalBroker | None = None

    def stop(self) -> None:
        if self.local is not None:
            self.local.stop()


def broker() -> Broker:
    """``KAFKA_BOOTSTRAP_SERVERS`` if given; else a fresh (wiped) local broker on ``BENCH_KAFKA_PORT`` (19592)."""
    given = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if given:
        pid = os.environ.get("BENCH_BROKER_PID")
        return Broker(given, int(pid) if pid else None)
    local = LocalBroker(BENCH_KAFKA_PORT, BENCH_KAFKA_PORT + 1)
    local.wipe()
    local.start()
    return Broker(local.bootstrap, local.pid(), local)


# --- service processes -----------------------------------------------------------------------------------
def gateway(env: dict[str, str], log_dir: Path, *, workers: int, baseline: bool, name: str = "gateway") -> Service:
    """``python -m gateway`` (Kafka), or ``python -m bench.baseline_app`` (same server, no Kafka)."""
    env = {**env, "BINDWATCH_PORT": str(procs.free_port()), "BINDWATCH_WORKERS": str(workers)}
    return procs.gateway(env, log_dir, name, module="bench.baseline_app" if baseline else "gateway")


def worker(env: dict[str, str], log_dir: Path, name: str = "worker") -> Service:
    """A stream worker with RocksDB state, logging warnings and errors only (``BENCH_LOG_LEVEL`` to change)."""
    level = os.environ.get("BENCH_LOG_LEVEL", "WARNING")
    return procs.worker({"BINDWATCH_STORE": "rocksdb://", "BINDWATCH_LOG_LEVEL": level, **env}, log_dir, name)


# --- /proc probes -----------------------------------------------------------------------------------------
def cpu_seconds(pid: int, thread: int | None = None) -> float:
    """User + system CPU time of one process, or of one of its threads (``thread``: its id; the main thread's is
    the pid); 0 when it is gone."""
    path = f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat"
    try:
        fields = Path(path).read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14 and 15 of stat)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def du_mib(path: Path) -> float:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, f)).st_blocks * 512
    return total / (1024 * 1024)


class CpuMeter:
    """CPU used by named groups of processes over an interval, in cores (1.0 = one core busy)."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = {k: [p for p in v if p] for k, v in groups.items()}
        self.t0 = time.monotonic()
        self.c0 = {k: {p: cpu_seconds(p) for p in v} for k, v in self.groups.items()}

    def cores(self) -> dict[str, float]:
        wall = time.monotonic() - self.t0
        out = {}
        for k, pids in self.groups.items():
            used = sum(cpu_seconds(p) - self.c0[k][p] for p in pids)
            out[k] = round(used / wall, 2) if wall > 0 else 0.0
        return out


def total_cpu_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    parts = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = parts[3] + parts[4]
    return float(sum(parts) - idle), float(sum(parts))
