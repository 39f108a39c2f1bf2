"""Start and stop what the benchmarks measure: the broker, gateways and workers as processes; CPU and RSS probes."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
BENCH_KAFKA_PORT = 19592  # the lead uses 19092/19192/19292, another helper 19392
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """(status, body); status 0 when nothing answered. Loopback only, stdlib only (no client in the way)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 (loopback URLs we built)
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, OSError, TimeoutError):
        return 0, b""


# --- the broker ------------------------------------------------------------------------------------------
@dataclass
class Broker:
    bootstrap: str
    pid: int | None  # the java process, for CPU sampling (None for a broker we did not start)
    started: bool

    def stop(self) -> None:
        if self.started:
            _kafka_sh("stop", timeout=90)


def _kafka_sh(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "BINDWATCH_KAFKA_PORT": str(BENCH_KAFKA_PORT),
        "BINDWATCH_KAFKA_CONTROLLER_PORT": str(BENCH_KAFKA_PORT + 1),
    }
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "kafka.sh"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def broker() -> Broker:
    """``KAFKA_BOOTSTRAP_SERVERS`` if given; else a fresh (wiped) local broker on port 19592."""
    given = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if given:
        pid = os.environ.get("BENCH_BROKER_PID")
        return Broker(given, int(pid) if pid else None, started=False)
    _kafka_sh("wipe", timeout=120)
    r = _kafka_sh("start", timeout=240)
    if r.returncode != 0:
        raise RuntimeError(f"scripts/kafka.sh start failed:\n{r.stdout}\n{r.stderr}")
    pidfile = ROOT / ".kafka" / f"run-{BENCH_KAFKA_PORT}" / "kafka.pid"
    return Broker(f"127.0.0.1:{BENCH_KAFKA_PORT}", int(pidfile.read_text().strip()), started=True)


# --- service processes -----------------------------------------------------------------------------------
@dataclass
class Proc:
    """One service process (own session, so its uvicorn workers stop with it), with a log file and a ready URL."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    ready_url: str
    proc: subprocess.Popen[bytes] | None = None
    extra_pids: list[int] = field(default_factory=list)

    def start(self, timeout: float = 120.0) -> Proc:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                env={**os.environ, **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                start_new_session=True,
            )
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float) -> float:
        """Seconds until the ready URL answered 200."""
        t0 = time.monotonic()
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited during start; log {self.log_path}:\n{self.log_tail()}")
            if http_get(self.ready_url)[0] == 200:
                return time.monotonic() - t0
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready within {timeout:.0f}s; log {self.log_path}:\n{self.log_tail()}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def url(self, path: str) -> str:
        return self.ready_url.rsplit("/", 1)[0] + path

    def pids(self) -> list[int]:
        """The process and its descendants (uvicorn's worker processes are children of the supervisor)."""
        return process_tree(self.pid) if self.alive() else []

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 30.0) -> None:
        if not self.alive():
            return
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@contextlib.contextmanager
def running(*procs: Proc, timeout: float = 120.0) -> Iterator[tuple[Proc, ...]]:
    """Start each in order; always stop all of them (in reverse) on the way out."""
    started: list[Proc] = []
    try:
        for p in procs:
            started.append(p)
            p.start(timeout)
        yield procs
    finally:
        for p in reversed(started):
            p.stop()


def gateway(env: dict[str, str], log_dir: Path, *, workers: int, baseline: bool, name: str = "gateway") -> Proc:
    """``python -m gateway`` (Kafka), or ``python -m bench.baseline_app`` (same server, no Kafka)."""
    port = free_port()
    module = "bench.baseline_app" if baseline else "gateway"
    env = {
        **env,
        "BINDWATCH_PORT": str(port),
        "BINDWATCH_HOST": "127.0.0.1",
        "BINDWATCH_WORKERS": str(workers),
    }
    return Proc(
        name,
        [str(VENV_BIN / "python"), "-m", module],
        env,
        log_dir / f"{name}.log",
        f"http://127.0.0.1:{port}/readyz",
    )


def worker(env: dict[str, str], log_dir: Path, name: str = "worker") -> Proc:
    """``faust -A stream.app worker`` with RocksDB state in its own data dir."""
    port = free_port()
    env = {
        "BINDWATCH_STORE": "rocksdb://",
        "BINDWATCH_DATA_DIR": str(log_dir / f"{name}-state"),
        **env,
        "BINDWATCH_WEB_PORT": str(port),
        "BINDWATCH_WEB_HOST": "127.0.0.1",
    }
    Path(env["BINDWATCH_DATA_DIR"]).parent.mkdir(parents=True, exist_ok=True)  # Faust makes only the last level
    return Proc(
        name,
        [str(VENV_BIN / "faust"), "-A", "stream.app", "worker", "-l", "warn"],
        env,
        log_dir / f"{name}.log",
        f"http://127.0.0.1:{port}/readyz",
    )


# --- /proc probes -----------------------------------------------------------------------------------------
def process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
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
