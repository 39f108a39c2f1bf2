"""docs/noise.md is what docs/noise_report.py generates, and it meets issue 18's target."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from stream.rules import Policy

SCRIPT = Path(__file__).resolve().parents[2] / "docs" / "noise_report.py"


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("noise_report", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_the_committed_report_is_current() -> None:
    m = load()
    assert m.OUT.read_text() == m.report(), "run .venv/bin/python docs/noise_report.py"


def test_alerts_firing_at_the_end_equal_the_problems_in_every_scenario() -> None:
    m = load()
    for sc in m.scenarios():
        got = m.measure(sc, Policy())
        assert got["firing_end"] == sc.problems, (sc.name, got)
        assert got["alerts"] - got["handovers"] == sc.problems, (sc.name, got)
