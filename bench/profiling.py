"""Sampling profiles with py-spy (collapsed stacks, which speedscope and flamegraph.pl open), and a summary of
where the CPU went: by package, by function (self time) and by function including callees.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections import Counter
from pathlib import Path

from tests.support.procs import VENV_BIN

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]+)(?::\d+)?\)$")
_PROCESS = re.compile(r'^(?:process \d+:".*?";)+')  # --subprocesses: 'process PID:"cmdline";' (may hold ';')

# Which package a file belongs to, by the first path component that names one.
_PACKAGES = (
    "gateway",
    "stream",
    "schemas",
    "bench",
    "faust",
    "mode",
    "aiokafka",
    "kafka",
    "rocksdict",
    "pydantic",
    "pydantic_core",
    "fastapi",
    "starlette",
    "uvicorn",
    "httptools",
    "uvloop",
    "prometheus_client",
    "orjson",
    "aiohttp",
    "asyncio",
    "logging",
    "json",
    "opentracing",
    "croniter",
)


def _argv(pid: int, seconds: int, out: Path, subprocesses: bool, rate: int) -> list[str]:
    argv = [
        str(VENV_BIN / "py-spy"),
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(seconds),
        "--rate",
        str(rate),
        "--format",
        "raw",
        "--nonblocking",  # do not pause the target while reading its stacks: less distortion
        "-o",
        str(out),
    ]
    if subprocesses:
        argv.append("--subprocesses")
    if os.environ.get("BENCH_PROFILE_GIL") == "1":
        # only the thread holding the GIL: Faust runs its consumer in a second thread, and a thread waiting for
        # the GIL is otherwise charged to whatever line it waits at
        argv.append("--gil")
    elif os.environ.get("BENCH_PROFILE_IDLE") == "1":
        # every thread, waiting or not, each stack under its thread's id: where the worker waits, and for what
        argv += ["--idle", "--threads"]
    return argv


def start(pid: int, seconds: int, out: Path, *, rate: int = 100) -> subprocess.Popen[bytes]:
    """Start sampling ``pid`` for at most ``seconds``; stop it early with SIGINT (it then writes ``out``)."""
    return subprocess.Popen(_argv(pid, seconds, out, False, rate), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def record(pid: int, seconds: int, out: Path, *, subprocesses: bool = False, rate: int = 100) -> Path | None:
    """Sample ``pid`` (and its children) for ``seconds``; write collapsed stacks to ``out``. None if it failed."""
    argv = _argv(pid, seconds, out, subprocesses, rate)
    r = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    if r.returncode != 0 or not out.exists():
        out.with_suffix(".err").write_text(r.stdout + r.stderr)
        return None
    return out


def _package(file: str) -> str:
    parts = file.replace("\\", "/").split("/")
    if "site-packages" in parts:
        parts = parts[parts.index("site-packages") + 1 :]
    for p in parts[:-1] if len(parts) > 1 else parts:
        name = p.removesuffix(".py")
        if name in _PACKAGES:
            return name
    if "python3" in file or file.startswith("<"):
        stem = parts[-1].removesuffix(".py")
        return stem if stem in _PACKAGES else "stdlib/other"
    return parts[0].removesuffix(".py") if len(parts) == 1 else "other"


def _frames(stack: str) -> list[tuple[str, str]]:
    stack = _PROCESS.sub("", stack)
    out = []
    for raw in stack.split(";"):
        m = _FRAME.match(raw.strip())
        if m is None:
            out.append((raw.strip(), "?"))
        else:
            out.append((m.group("func"), m.group("file")))
    return out


def summarise(path: Path, top: int = 15) -> dict[str, object]:
    """Shares (percent of samples) by package (self), by function (self) and by our own functions (inclusive)."""
    by_pkg: Counter[str] = Counter()
    self_fn: Counter[str] = Counter()
    incl_fn: Counter[str] = Counter()
    flows: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        frames = [f for f in _frames(stack) if not f[0].startswith("process ") and not f[0].startswith("thread ")]
        if not frames:
            continue
        total += count
        func, file = frames[-1]
        by_pkg[_package(file)] += count
        self_fn[f"{func} ({Path(file).name})"] += count
        seen = set()
        for f, fl in frames:
            key = f"{f} ({Path(fl).name})"
            if key not in seen:
                seen.add(key)
                incl_fn[key] += count

        flows[_flow(frames)] += count

    def pct(c: Counter[str]) -> list[list[object]]:
        return [[k, round(100 * v / total, 1)] for k, v in c.most_common(top)] if total else []

    return {
        "samples": total,
        "self_by_package": pct(by_pkg),
        "self_by_function": pct(self_fn),
        "inclusive_by_function": pct(incl_fn),
        "by_flow": pct(flows),
    }


_OWN = ("gateway", "stream", "schemas")
_LOOP_RUNNERS = ("Handle._run", "Runner.run", "BaseEventLoop._run_once", "run_forever", "run_until_complete")
# Generic wrappers that run someone else's coroutine: look one frame further for the label.
_WRAPPERS = ("Service._execute_task", "Agent._execute_actor", "Agent._slurp", "wait_for", "Timer.__call__")


def _is_own(file: str) -> bool:
    parts = file.replace("\\", "/").split("/")
    return "site-packages" not in parts and len(parts) >= 2 and parts[-2] in _OWN


def _label(frame: tuple[str, str]) -> str:
    func, file = frame
    return f"{func} ({'/'.join(file.split('/')[-2:])})"


def _flow(frames: list[tuple[str, str]]) -> str:
    """One label per sample that partitions the profile: where our code spends (deepest own frame and the
    library call it made), or, outside our code, which framework task the event loop was running.
    """
    own = [i for i, (_f, fl) in enumerate(frames) if _is_own(fl)]
    if own:
        i = own[-1]
        callee = _label(frames[i + 1]) if i + 1 < len(frames) else "(self)"
        return f"{_label(frames[i])} -> {callee}"
    runners = [i for i, (f, _fl) in enumerate(frames) if f.endswith(_LOOP_RUNNERS)]
    i = runners[-1] + 1 if runners else 0
    while i + 1 < len(frames) and frames[i][0].endswith(_WRAPPERS):
        i += 1
    task = _label(frames[i]) if i < len(frames) else _label(frames[-1])
    return f"framework: {task}, self in {_package(frames[-1][1])}"
