"""Issue 18's burst on a real broker with the worker as a real process: 400 callers over 40 DIDs within two
minutes, a quarter of them retrying the same DID three times. The alerts per rule must be exactly what the
pure rules compute: one pair_repeat per retrying caller, one did_hot per DID, and no caller_repeat (before
the precedence rules: 100 caller_repeat on top of the 100 pair_repeat)."""

from __future__ import annotations

import random
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from schemas import BindingFailureEvent
from stream.config import StreamSettings
from tests.integration.test_stream import alert_keys, check_counts, records_now
from tests.support import procs
from tests.support.events import event, expected
from tests.support.kafka import Names, consume, produce, setup_topics

pytestmark = pytest.mark.integration


def burst(seed: int) -> list[BindingFailureEvent]:
    rnd = random.Random(seed)
    dids = [f"85293{i:06d}" for i in range(40)]
    out = []
    for c in range(400):
        caller = f"86136{c:06d}"
        did = dids[c % 40]  # every DID gets 10 callers
        tries = 3 if c % 4 == 0 else 1  # a quarter retry the same DID three times
        out += [event(f"burst-{c}-{t}", caller, did, timedelta(seconds=rnd.randint(0, 119))) for t in range(tries)]
    rnd.shuffle(out)
    return out


def per_rule(keys: Counter[tuple[str, str, str]], status: str = "firing") -> Counter[str]:
    out: Counter[str] = Counter()
    for (fingerprint, st, _severity), n in keys.items():
        if st == status:
            out[fingerprint.split(":")[0]] += n
    return out


def test_outage_burst_raises_one_alert_per_problem(bootstrap: str, logdir: Path) -> None:
    names = Names.new("noise")
    s = setup_topics(bootstrap, names)
    events = burst(seed=18)
    want, callers, dids = expected(events, StreamSettings().policy())
    firing_want = per_rule(want)
    assert firing_want == {"pair_repeat": 100, "did_hot": 40}, firing_want  # what the pure rules say
    wk = procs.worker({**names.env(bootstrap), "BINDWATCH_STORE": "memory://"}, logdir).start(timeout=120)
    try:
        produce(bootstrap, s.events_topic, records_now(events))
        check_counts(wk, callers, dids, timeout=180)
        want_firing_keys = {k: v for k, v in want.items() if k[1] == "firing"}

        def all_fired(recs: list) -> bool:  # type: ignore[type-arg]
            return {k: v for k, v in alert_keys(recs).items() if k[1] == "firing"} == want_firing_keys

        consume(bootstrap, s.alerts_topic, all_fired, timeout=60)
        got = alert_keys(consume(bootstrap, s.alerts_topic, timeout=5))  # and nothing more arrives
    finally:
        wk.stop()
    assert per_rule(got) == firing_want
    assert {k: v for k, v in got.items() if k[1] == "firing"} == want_firing_keys
    assert per_rule(got, "resolved") == Counter(), "nothing resolves within the test (no hand-over either)"
