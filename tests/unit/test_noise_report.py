"""docs/noise.md is what docs/noise_report.py renders now (pure figures, and the live ones it records), and the
pure figures meet issue 18's target where the code does (the outage burst says why it does not yet)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from schemas.alerts import AlertStatus, Rule

SCRIPT = Path(__file__).resolve().parents[2] / "docs" / "noise_report.py"


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("noise_report", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_the_committed_report_is_current_and_records_a_live_run() -> None:
    m = load()
    text = m.OUT.read_text()
    assert text == m.report(), "run .venv/bin/python docs/noise_report.py (or --live)"
    live = m.read_live(text)
    assert live is not None and set(live["figures"]) == {sc.key for sc in m.scenarios()}


def test_per_number_scenarios_page_once_per_problem() -> None:
    m = load()
    for sc in m.scenarios():
        if sc.key == "burst":
            continue
        got = m.figures(m.run_pure(sc))
        assert got.firing_end == got.paged == sc.problems, (sc.name, got)
        assert got.fired - got.handovers == sc.problems, (sc.name, got)
        assert got.outages == got.marked == 0, (sc.name, got)


def test_the_burst_raises_one_outage_and_every_marked_alert_is_muted_by_it() -> None:
    m = load()
    [sc] = [s for s in m.scenarios() if s.key == "burst"]
    alerts = m.run_pure(sc)
    got = m.figures(alerts)
    [outage] = {a.fingerprint for a in alerts if a.rule is Rule.BINDING_OUTAGE}
    assert got.outages == 1
    assert got.firing_end == 1 + got.marked + got.unmarked
    assert got.marked > 0
    marked = {a.fingerprint for a in alerts if a.outageFingerprint}
    assert all(a.outageFingerprint == outage for a in alerts if a.outageFingerprint)
    # the shipped inhibition mutes exactly the marked ones: the outage and the unmarked ones page
    last = {a.fingerprint: a for a in alerts}
    firing = [a for a in last.values() if a.status is AlertStatus.FIRING]
    assert {a.fingerprint for a in m.inhibited(firing)} == marked
    assert got.paged == 1 + got.unmarked


def test_the_inhibition_follows_alertmanagers_rules() -> None:
    """A caller_repeat is muted by the same caller's pair_repeat, not by another caller's; an outage mutes only
    the alerts that name it."""
    m = load()
    [scan] = [s for s in m.scenarios() if s.key == "scan"]
    alerts = m.run_pure(scan)
    repeat = next(a for a in alerts if a.rule is Rule.CALLER_REPEAT and a.status is AlertStatus.FIRING)
    pair = repeat.model_copy(update={"rule": Rule.PAIR_REPEAT, "fingerprint": "pair_repeat:x", "alertId": "p"})
    other = pair.model_copy(update={"caller": "999", "fingerprint": "pair_repeat:y", "alertId": "q"})
    assert m.inhibited([repeat, pair]) == [repeat]
    assert m.inhibited([repeat, other]) == []
    [burst] = [s for s in m.scenarios() if s.key == "burst"]
    outage = next(a for a in m.run_pure(burst) if a.rule is Rule.BINDING_OUTAGE)
    named = pair.model_copy(update={"outageFingerprint": outage.fingerprint})
    elsewhere = other.model_copy(update={"outageFingerprint": "binding_outage:other"})
    assert m.inhibited([outage, named, elsewhere]) == [named]
