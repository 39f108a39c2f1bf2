"""Run the quixstreams peer (bench/peer_quix/app.py) over a backlog topic and measure it like a bindwatch worker:
events/s from the first event seen to the last, and the peer process's CPU per event.

The peer runs in its own virtualenv, ``.venv-quix`` (pinned: bench/peer_quix/requirements.txt), created here on
first use, so quixstreams' dependencies never touch the app's ``.venv``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PEER_DIR = ROOT / "bench" / "peer_quix"
VENV = ROOT / ".venv-quix"


def ensure_venv() -> Path:
    """Create or update .venv-quix from the pinned requirements; return its python."""
    req = PEER_DIR / "requirements.txt"
    want = hashlib.sha256(req.read_bytes()).hexdigest()
    stamp = VENV / ".bindwatch-peer-req"
    py = VENV / "bin" / "python"
    if py.exists() and stamp.exists() and stamp.read_text() == want:
        return py
    print("bench: installing the quixstreams peer into .venv-quix (first use)...", file=sys.stderr)
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r", str(req)], check=True)
    stamp.write_text(want)
    return py


def _progress(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()))
    except (FileNotFoundError, json.JSONDecodeError):
        return {"caller": 0, "did": 0, "alerts": 0}


def drain(
    bootstrap: str, topic: str, n: int, workdir: Path, *, caller_stage_only: bool = False, timeout: float = 900
) -> dict[str, Any]:
    """Start a fresh peer (own consumer group and state) on ``topic`` and wait until its last stage saw ``n``."""
    py = ensure_venv()
    group = f"quix-peer-{int(time.time() * 1000)}{'-caller' if caller_stage_only else ''}"
    state = workdir / f"{group}-state"
    progress = workdir / f"{group}.progress.json"
    log = (workdir / f"{group}.log").open("wb")
    argv = [
        str(py),
        str(PEER_DIR / "app.py"),
        "--bootstrap",
        bootstrap,
        "--topic",
        topic,
        "--group",
        group,
        "--state-dir",
        str(state),
        "--progress",
        str(progress),
    ]
    if caller_stage_only:
        argv.append("--caller-stage-only")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    last_stage = "caller" if caller_stage_only else "did"
    t0 = time.monotonic()
    seen: dict[str, Any] = {}
    try:
        while time.monotonic() - t0 < timeout:
            if proc.poll() is not None:
                raise RuntimeError(f"the quixstreams peer exited with {proc.returncode}; see {log.name}")
            seen = _progress(progress)
            if seen.get(last_stage, 0) >= n:
                break
            time.sleep(0.25)
        else:
            raise RuntimeError(f"the quixstreams peer did not drain {n} events in {timeout}s: {seen}")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
        shutil.rmtree(state, ignore_errors=True)
    # stamped by the peer itself: wall clock and process CPU (all threads) at its first event and its last
    (wall0, cpu0), (wall1, cpu1) = seen["first"], seen[f"{last_stage}_last"]
    elapsed, cpu = wall1 - wall0, cpu1 - cpu0
    rate = n / elapsed if elapsed > 0 else 0.0
    return {
        "events": n,
        "stages": "caller" if caller_stage_only else "caller+did",
        "seconds": round(elapsed, 2),
        "events_per_s": round(rate, 1),
        "peer_us_per_event": round(cpu / n * 1e6, 1),
        "alerts": seen.get("alerts", 0),
        "quixstreams": "3.28.1",
    }
