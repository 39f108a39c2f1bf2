"""Regenerate ``docs/noise.md``: distinct problems against alerts per scenario, pure and live side by side.

Run: ``.venv/bin/python docs/noise_report.py`` renders the pure figures now, next to the live figures recorded
in the committed report; ``--live`` replays the scenarios against real processes first and records their
figures; ``--check`` exits 1 if the committed report is not what would be rendered now (the unit test does too).

**Pure**: each scenario runs in process through the worker's own code: the two ``stream.core.StageCore`` stages
(caller, then DID through the forwarded entries) with in-memory tables, their ``stream.counting.StageCounter``
outage counts, and ``stream.outage.Aggregate`` merging the partials (encoded and decoded, as on the topic) and
applying ``binding_outage`` after each merge, as ``stream.app`` wires them; the firing outage's fingerprint goes
back to the stages, which stamp it on their alerts (``outageFingerprint``). Pushes arrive in *waves*: a wave is
processed by both stages, then every partition's partial is sent and judged, so an outage fired by one wave is
known to the stages from the next wave on.

**Live** (``--live``): the same pushes through real HTTP to the gateway (``python -m gateway``) on a real Kafka
broker (``KAFKA_BOOTSTRAP_SERVERS``, else ``scripts/kafka.sh`` on ``BINDWATCH_NOISE_KAFKA_PORT``, default 20592)
and one stream worker (``faust -A stream.app worker``), counted from the alerts topic. The per-number scenarios
share one gateway and worker (their numbers are distinct; 16 callers cannot make an outage); the outage scenario
gets a gateway and worker of its own, on topics of its own, so no other scenario's failures count in its
5-minute window. Each wave is sent, then awaited until the DID stage has processed it and the worker's
``/v1/overview`` shows its failures judged, before the next wave goes.

Both count the same things from the alerts in the order they were emitted (``Figures``); *paged for* applies the
shipped Alertmanager inhibition (``deploy/alertmanager/alertmanager.yml``, read here) to the alerts firing at the
end, labelled as the console labels them (``console.mapping.labels``).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from console.config import ConsoleSettings
from console.mapping import labels
from console.records import AlertChange
from schemas.alerts import Alert, AlertStatus, Rule
from stream import bundle
from stream.config import StreamSettings
from stream.core import Item, StageCore
from stream.counting import StageCounter
from stream.outage import Aggregate, OutagePolicy, OutageRef, Partial
from stream.rules import Failure, Kind, Policy
from tests.support.tables import MemoryTable

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "noise.md"
ALERTMANAGER = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
PARTITIONS = 4
"""Partitions of the worker's topics, pure and live (the tests' default)."""
T_PURE = int(datetime(2026, 11, 29, 12, 0, 30, tzinfo=UTC).timestamp() * 1000)
"""The pure run's wall clock when a scenario starts (live: the real clock, to the second)."""
WAVE_MS = 2_000
"""Pure: wall-clock time between two waves (live: however long a wave takes, about that)."""
LIVE_ENV = {
    "BINDWATCH_STORE": "memory://",
    "BINDWATCH_OUTAGE_PUBLISH_SECONDS": "1",
    "BINDWATCH_OVERVIEW_PUBLISH_SECONDS": "1",
    "BINDWATCH_COMMIT_INTERVAL_SECONDS": "0.5",
    "BINDWATCH_TICK_SECONDS": "0.5",
}
"""The live worker's settings besides the topic names: the short publish intervals of
``tests/integration/test_outage.py`` (so a wave is judged within about a second); every rule setting, the outage
rule's included, is the default (resolution after 300 s, so the outage cannot resolve during the run)."""
TOKEN = "noise-report-token"  # noqa: S105  (the live run's own gateway, on loopback)
LIVE_MARK = "<!-- live figures (written by --live, read back by the renderer): "


# --- scenarios ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Push:
    rid: str
    caller: str
    did: str
    ts: int
    """Occurrence time, epoch ms, whole seconds (NXCLOUD's occurrenceTime has no fraction)."""


@dataclass
class Scenario:
    key: str
    name: str
    problems: int
    why: str
    offsets: list[tuple[str, str, int]]
    """(caller, did, seconds after the scenario's first push), in the order they arrive."""
    wave: int = 0
    """Pushes per wave (0: all in one)."""
    baseline: bool = False
    """Preceded by a quiet hour, so that ``binding_outage`` may judge (it waits for 15 known 5-minute totals)."""

    def pushes(self, start_ms: int) -> list[Push]:
        """The pushes for a scenario run starting at ``start_ms`` (wall clock): occurrence times end 1 s before
        it (every push is in the past, the span of the scenario kept)."""
        span = max(o for _c, _d, o in self.offsets)
        first = start_ms // 1000 * 1000 - (span + 1) * 1000
        return [Push(f"{self.key}-{i}", c, d, first + o * 1000) for i, (c, d, o) in enumerate(self.offsets)]

    def waves(self, start_ms: int) -> list[list[Push]]:
        pushes = self.pushes(start_ms)
        size = self.wave or len(pushes)
        return [pushes[i : i + size] for i in range(0, len(pushes), size)]


def quiet_hour(start_ms: int) -> list[Push]:
    """The outage scenario's baseline: 4 failures a minute for 64 minutes, ending 6 minutes before ``start_ms``
    (outside the 5-minute window of the burst), each from its own caller to its own DID (no per-number problem).
    Its 5-minute total, 20, is the baseline; the outage threshold is then the floor, 200."""
    first = start_ms // 1000 * 1000 - 70 * 60_000
    return [Push(f"quiet-{k}", f"8690{k:08d}", f"8590{k:08d}", first + k * 15_000) for k in range(256)]


def n(kind: str, scenario: int, i: int) -> str:
    """A number of its own per scenario: callers 86<s>1..., DIDs 85<s>2..."""
    return f"86{scenario}1{i:08d}" if kind == "caller" else f"85{scenario}2{i:08d}"


def scenarios() -> list[Scenario]:
    rnd = random.Random(18)
    burst = []
    for c in range(400):
        tries = 3 if c % 4 == 0 else 1
        burst += [(n("caller", 5, c), n("did", 5, c % 40), rnd.randint(0, 119)) for _ in range(tries)]
    rnd.shuffle(burst)
    return [
        Scenario(
            "retry",
            "a caller retrying one DID (3 pushes)",
            1,
            "the pair",
            [(n("caller", 1, 0), n("did", 1, 0), i * 30) for i in range(3)],
        ),
        Scenario(
            "two",
            "a caller failing on two DIDs (twice each)",
            1,
            "the caller",
            [(n("caller", 2, 0), n("did", 2, i % 2), i * 30) for i in range(4)],
        ),
        Scenario(
            "scan",
            "a scanner over 20 DIDs",
            1,
            "the scan",
            [(n("caller", 3, 0), n("did", 3, i), i * 20) for i in range(20)],
        ),
        Scenario(
            "hot",
            "a hot DID (12 callers once each)",
            1,
            "the DID",
            [(n("caller", 4, i), n("did", 4, 0), i * 20) for i in range(12)],
        ),
        Scenario(
            "burst",
            "a 400-caller outage burst (40 DIDs, a quarter retrying 3 times: 600 pushes within 2 minutes)",
            1,
            "the outage; inside it 100 pairs and 40 DIDs",
            burst,
            wave=20,
            baseline=True,
        ),
        Scenario(
            "storm",
            "a 200-push storm from one caller to one DID",
            1,
            "the pair",
            [(n("caller", 6, 0), n("did", 6, 0), i) for i in range(200)],
        ),
    ]


# --- what is counted -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Figures:
    fired: int
    """Alerts (fingerprints) that fired."""
    firing_end: int
    """Alerts firing at the end."""
    emissions: int
    """Firing changes emitted (first firings, severity rises), by ``alertId``."""
    handovers: int
    """Resolutions with ``supersededBy``."""
    outages: int
    """``binding_outage`` alerts that fired."""
    marked: int
    """Per-number alerts firing at the end whose last change carries ``outageFingerprint``."""
    unmarked: int
    """Per-number alerts firing at the end without it."""
    paged: int
    """Alerts firing at the end that the shipped Alertmanager inhibition does not mute."""


def figures(alerts: Iterable[Alert]) -> Figures:
    """The figures of one scenario from its alert changes in the order they were emitted (a change re-sent with the
    same ``alertId``, at-least-once, counts once)."""
    seen: set[str] = set()
    changes = []
    for a in alerts:
        if a.alertId not in seen:
            seen.add(a.alertId)
            changes.append(a)
    last: dict[str, Alert] = {}
    for a in changes:
        last[a.fingerprint] = a
    firing = [a for a in last.values() if a.status is AlertStatus.FIRING]
    per_number = [a for a in firing if a.rule is not Rule.BINDING_OUTAGE]
    return Figures(
        fired=len({a.fingerprint for a in changes if a.status is AlertStatus.FIRING}),
        firing_end=len(firing),
        emissions=sum(1 for a in changes if a.status is AlertStatus.FIRING),
        handovers=sum(1 for a in changes if a.supersededBy),
        outages=len({a.fingerprint for a in changes if a.rule is Rule.BINDING_OUTAGE}),
        marked=sum(1 for a in per_number if a.outageFingerprint),
        unmarked=sum(1 for a in per_number if not a.outageFingerprint),
        paged=len(firing) - len(inhibited(firing)),
    )


# --- Alertmanager's inhibition, as the shipped configuration says -------------------------------------------------
_MATCHER = re.compile(r'^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"(.*)"\s*$')


def _matches(matchers: Sequence[str], lbl: dict[str, str]) -> bool:
    for m in matchers:
        parsed = _MATCHER.match(m)
        if parsed is None:
            raise ValueError(f"cannot read the matcher {m!r} of {ALERTMANAGER}")
        name, op, value = parsed.groups()
        got = lbl.get(name, "")
        ok = {
            "=": got == value,
            "!=": got != value,
            "=~": re.fullmatch(value, got) is not None,  # Alertmanager anchors its regular expressions
            "!~": re.fullmatch(value, got) is None,
        }[op]
        if not ok:
            return False
    return True


def inhibited(firing: Sequence[Alert]) -> list[Alert]:
    """The firing alerts that an inhibition rule of the shipped configuration mutes: a firing source alert matches
    ``source_matchers``, the target ``target_matchers``, their ``equal`` labels agree (absent = empty), and (as
    Alertmanager does) an alert that matches both sides is not muted by one that matches both sides too."""
    config = yaml.safe_load(ALERTMANAGER.read_text())
    settings = ConsoleSettings(alertmanager_extra_labels={}, notify_mask_numbers=False)
    lbl = [labels(AlertChange.model_validate(a.model_dump(mode="json")), settings) for a in firing]
    out = []
    for i, target in enumerate(lbl):
        for rule in config.get("inhibit_rules") or []:
            src, tgt, equal = rule["source_matchers"], rule["target_matchers"], rule.get("equal", [])
            if not _matches(tgt, target):
                continue
            both = _matches(src, target)
            if any(
                j != i
                and _matches(src, source)
                and all(source.get(e, "") == target.get(e, "") for e in equal)
                and not (both and _matches(tgt, source))
                for j, source in enumerate(lbl)
            ):
                out.append(firing[i])
                break
    return out


# --- pure: the worker's code in process ---------------------------------------------------------------------------
class Sink:
    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    async def send(self, alerts: Sequence[Alert]) -> None:
        self.alerts += alerts


class Forwards:
    def __init__(self) -> None:
        self.entries: list[bundle.Entry] = []

    async def forward(self, entries: Sequence[bundle.Entry]) -> None:
        self.entries += entries


@dataclass
class Pipeline:
    """One worker: both stages with their outage counts, and the aggregator, wired as ``stream.app`` wires them."""

    policy: Policy
    outage_policy: OutagePolicy
    now: int = 0
    known: OutageRef | None = None
    joined: OutageRef | None = None
    sink: Sink = field(default_factory=Sink)
    forwards: Forwards = field(default_factory=Forwards)
    agg: Aggregate = field(default_factory=Aggregate)
    offsets: dict[tuple[Kind, int], int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.counters = {k: StageCounter(k, lambda: self.now) for k in Kind}
        common: dict[str, Any] = {"firing_outage": lambda: self.known, "partitions": PARTITIONS}
        self.cores = {
            Kind.CALLER: StageCore(
                Kind.CALLER,
                MemoryTable(PARTITIONS),
                self.sink,
                self.policy,
                lambda: self.now,
                forwarder=self.forwards,
                counter=self.counters[Kind.CALLER],
                **common,
            ),
            Kind.DID: StageCore(
                Kind.DID,
                MemoryTable(PARTITIONS),
                self.sink,
                self.policy,
                lambda: self.now,
                counter=self.counters[Kind.DID],
                **common,
            ),
        }

    def _offset(self, kind: Kind, partition: int) -> int:
        o = self.offsets[(kind, partition)] = self.offsets.get((kind, partition), -1) + 1
        return o

    async def wave(self, pushes: Sequence[Push], now: int) -> None:
        """The caller stage takes the wave (one record per push), the DID stage its forwards (one bundle record
        per DID partition), then every partition of both stages sends its partial and the aggregator judges."""
        self.now = now
        items = []
        for p in pushes:
            part = bundle.partition_for(p.caller, PARTITIONS)
            entry = bundle.Entry(p.did, p.caller, p.ts, p.rid)
            failure = Failure(p.ts, p.rid, p.did)
            items.append(Item(p.caller, None, failure, entry, part, self._offset(Kind.CALLER, part), "queryAXB"))
        await self.cores[Kind.CALLER].process(items)
        entries, self.forwards.entries = self.forwards.entries, []
        by_partition: dict[int, list[bundle.Entry]] = {}
        for e in entries:
            by_partition.setdefault(bundle.partition_for(e.did, PARTITIONS), []).append(e)
        did_items = []
        for part, es in sorted(by_partition.items()):
            offset = self._offset(Kind.DID, part)
            did_items += [Item(e.did, None, Failure(e.ts, e.rid, e.caller), None, part, offset) for e in es]
        await self.cores[Kind.DID].process(did_items)
        for kind in Kind:
            firing = self.cores[kind].firing_counts(PARTITIONS)
            for partial in self.counters[kind].partials(now, set(range(PARTITIONS)), firing):
                self.agg.merge(Partial.decode(partial.encode()))
                self.agg.prune(now)
                self.sink.alerts += self.agg.evaluate(now, self.outage_policy, PARTITIONS)
                self.known = self.agg.outage_ref()
        if self.known is not None and self.known != self.joined:
            # the worker's timer: a tick for every subject with a firing alert, at which the alerts of the
            # outage's window join it (stream.rules.join_outage)
            for core in self.cores.values():
                await core.process([Item(key, None) for key in list(core.firing)])
        self.joined = self.known


def run_pure(sc: Scenario) -> list[Alert]:
    """The alerts of one scenario from the pure pipeline, in the order they were emitted."""
    settings = StreamSettings()
    pipe = Pipeline(settings.policy(), settings.outage_policy())

    async def go() -> None:
        start = T_PURE
        if sc.baseline:
            await pipe.wave(quiet_hour(start), start - 5_000)
        for i, wave in enumerate(sc.waves(start)):
            await pipe.wave(wave, start + i * WAVE_MS)

    asyncio.run(go())
    return pipe.sink.alerts


def pure() -> dict[str, Figures]:
    return {sc.key: figures(run_pure(sc)) for sc in scenarios()}


# --- the report ---------------------------------------------------------------------------------------------------
TABLES = [
    [
        ("paged", "paged for"),
        ("firing_end", "firing at the end"),
        ("outages", "binding_outage"),
        ("marked", "per-number, marked"),
        ("unmarked", "unmarked"),
    ],
    [("fired", "alerts that fired"), ("emissions", "firing emissions"), ("handovers", "hand-overs")],
]
"""The figures shown, in two tables (each figure pure and live side by side)."""


def read_live(text: str) -> dict[str, Any] | None:
    """The live figures recorded in a report (``None``: never run live)."""
    for line in text.splitlines():
        if line.startswith(LIVE_MARK):
            doc: dict[str, Any] = json.loads(line[len(LIVE_MARK) : -len(" -->")])
            return doc
    return None


def render(pure_figs: dict[str, Figures], live: dict[str, Any] | None) -> str:
    scs = scenarios()
    live_figs: dict[str, dict[str, int]] = (live or {}).get("figures", {})
    lines = [
        "# Alert noise: problems against alerts",
        "",
        "Generated by `docs/noise_report.py`; do not edit. `.venv/bin/python docs/noise_report.py --live` replays the",
        "scenarios against a real Kafka broker, the gateway and a stream worker (about 3 minutes) and rewrites this",
        "page with both columns; without `--live` it recomputes the pure columns and keeps the recorded live ones",
        "(`--check`, and `tests/unit/test_noise_report.py`, fail when this page is not what the code gives now).",
        "",
        "Target (issue 18): in every scenario, the alerts a person is paged for = the distinct problems.",
    ]
    differ = []
    for columns in TABLES:
        head = " | ".join(f"{title}: pure | live" for _k, title in columns)
        lines += ["", f"| scenario | problems | {head} |", "|---|---|" + "---:|---:|" * len(columns)]
        for sc in scs:
            p = asdict(pure_figs[sc.key])
            got = live_figs.get(sc.key)
            cells = []
            for k, _title in columns:
                lv = "n/a" if got is None else str(got[k])
                if got is not None and got[k] != p[k]:
                    lv = f"**{lv}**"
                    differ.append(f"{sc.name}: {k} {p[k]} pure, {got[k]} live")
                cells.append(f"{p[k]} | {lv}")
            why = f"{sc.problems} ({sc.why})" if columns is TABLES[0] else str(sc.problems)
            lines.append(f"| {sc.name} | {why} | " + " | ".join(cells) + " |")
    if live is None:
        live_note = "No live run is recorded yet: run `--live`."
    elif differ:
        live_note = (
            f"Live run: {live['when']}, code at commit {live['commit']} ({live['where']}). Live differs from pure in "
            f"(bold above): {'; '.join(differ)}."
        )
    else:
        live_note = (
            f"Live run: {live['when']}, code at commit {live['commit']} ({live['where']}). "
            "Every live figure equals the pure one."
        )
    burst = pure_figs["burst"]
    outage_policy = StreamSettings().outage_policy()
    floor, callers = outage_policy.min_failures, outage_policy.min_callers
    crossing = -(-floor // scs[4].wave)
    race = "It did not happen in the recorded run." if live is not None and not differ else ""
    lines += [
        "",
        live_note,
        "",
        "## How to read it",
        "",
        "* *Paged for*: the alerts firing at the end of the scenario that the shipped Alertmanager inhibition",
        "  (`deploy/alertmanager/alertmanager.yml`, applied by the script to the labels the console gives) does not",
        "  mute. A per-number alert is muted by a firing `binding_outage` only when it carries that outage's",
        "  fingerprint (`outage` label = `outageFingerprint`); a `caller_repeat` by the same caller's `pair_repeat` or",
        "  `caller_scan`; a warning by a critical alert of the same fingerprint.",
        "* *Marked* / *unmarked*: per-number alerts firing at the end whose last change carries `outageFingerprint`,",
        "  or not. The stages stamp the fingerprint of the outage they know of when they emit, and when they learn of",
        "  a new outage, the alerts that fired in its 5-minute window before then join it: each is re-sent with the",
        "  fingerprint at its subject's next tick (`stream.rules.join_outage`; a new `alertId`, counted in *firing",
        "  emissions*).",
        "* *Fired* counts fingerprints; a scanner's `caller_repeat` fires at its third DID and is handed over to",
        "  `caller_scan` at the fifth (`supersededBy`), so it counts there but not at the end. *Firing emissions*",
        "  adds severity rises (the storm reaching 10x a threshold) to first firings.",
        "",
        "## The outage burst",
        "",
        f"One `binding_outage` fires for the whole burst, and {burst.marked} of its {burst.marked + burst.unmarked}",
        "per-number alerts carry its fingerprint at the end, so the inhibition mutes them: a person is paged for",
        f"{burst.paged} alert(s) (target 1). The alerts emitted by the first {crossing} waves, up to and including",
        f"the one that took the 5-minute total to the threshold ({floor} failures from at least {callers} callers),",
        "went out unmarked, since no outage was known to the stages yet; they joined the outage at the tick after it",
        "fired (a worker's timer sends a tick for every subject with a firing alert when it learns of a new outage:",
        "about two `BINDWATCH_TICK_SECONDS` later). Alertmanager mutes them from then on; in its default route an",
        "alert is first notified 30 s (`group_wait`) after its group formed, so only those that fired more than",
        "about 30 s before the outage was detected can have been notified once. The difference between *firing",
        "emissions* and *alerts that fired* in the burst is those joins.",
        "",
        "Live, one race could make a figure differ by the few `did_hot` alerts the DID stage emits in the wave that",
        "crosses the threshold: the DID stage processes that wave's forwards milliseconds after the caller stage",
        "counted it, and if the worker's 1 s partial timer and the aggregator fire in between, those alerts are",
        "stamped when emitted live, and pure re-sends them at the join: the figures at the end are the same, only",
        "*firing emissions* would differ by those few. " + race,
        "",
        "## Settings",
        "",
        "* Rules and `binding_outage`: the defaults (`StreamSettings()`), pure and live.",
        "* Time: occurrence times in whole seconds, each scenario's ending 1 s before it starts (every push is in",
        "  the past; its span kept: the scanner's 20 DIDs are 20 s apart, the storm's pushes 1 s apart, the burst's",
        "  spread over 2 minutes and arriving in shuffled order).",
        "* The outage burst is preceded by a quiet hour: 4 failures a minute, each from its own caller to its own",
        "  DID, ending 6 minutes before the burst (baseline 20 per 5 minutes, threshold the floor of 200). The burst",
        f"  arrives in waves of {scs[4].wave} pushes; a wave is judged before the next is sent (pure: every",
        f"  partition's partial after each wave, wall clock {WAVE_MS // 1000} s apart; live: the next wave waits until",
        "  the worker shows the wave counted and judged).",
        f"* Live worker: {', '.join(f'`{k}={v}`' for k, v in LIVE_ENV.items())}, {PARTITIONS} partitions; the",
        "  per-number scenarios share one gateway and worker, the outage burst has its own (its own topics).",
        "",
    ]
    if live is not None:
        lines.append(LIVE_MARK + json.dumps(live, sort_keys=True) + " -->")
        lines.append("")
    return "\n".join(lines)


def report(live: dict[str, Any] | None = None) -> str:
    """The report with the live figures ``live``, else the ones recorded in the committed report."""
    if live is None and OUT.exists():
        live = read_live(OUT.read_text())
    return render(pure(), live)


# --- live: real processes on a real broker ------------------------------------------------------------------------
def _commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False).stdout.strip()

    head = git("rev-parse", "--short", "HEAD")
    dirty = git("status", "--porcelain", "--", "stream", "schemas", "gateway", "console", "deploy")
    return f"{head}{' + uncommitted changes' if dirty else ''}"


def _to_body(p: Push) -> dict[str, object]:
    from tests.support.events import push

    return push(p.rid, p.caller, p.did, datetime.fromtimestamp(p.ts / 1000, tz=UTC))


async def _post(url: str, pushes: Sequence[Push], concurrent: bool) -> None:
    import httpx

    async with httpx.AsyncClient(timeout=30) as client:

        async def one(p: Push) -> None:
            r = await client.post(url, params={"token": TOKEN}, json=_to_body(p))
            if r.status_code != 200:
                raise RuntimeError(f"the gateway answered {r.status_code} to {p.rid}: {r.text[:200]}")

        if concurrent:
            await asyncio.gather(*(one(p) for p in pushes))
        else:
            for p in pushes:  # one at a time: a subject's pushes reach its partition in this order
                await one(p)


def _processed(worker: Any, stage: str) -> int:
    import httpx

    text = httpx.get(worker.url("/metrics"), timeout=10).text
    total = 0.0
    for result in ("new", "duplicate", "too_late", "ignored"):
        m = re.search(rf'^bindwatch_stream_events_total{{result="{result}",stage="{stage}"}} ([0-9.e+]+)$', text, re.M)
        total += float(m.group(1)) if m else 0.0
    return int(total)


def _wait(what: str, ok: Any, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if ok():
                return
        except Exception as exc:  # a worker still starting its web server, or routing: ask again
            last = repr(exc)
        else:
            last = "not yet"
        time.sleep(0.2)
    raise RuntimeError(f"timed out waiting for {what} ({last})")


def _stack(bootstrap: str, tag: str, logdir: Path) -> tuple[Any, Any, Any]:
    from tests.support import procs
    from tests.support.kafka import Names, setup_topics

    names = Names.new(f"noise-{tag}")
    s = setup_topics(bootstrap, names, PARTITIONS)
    env = names.env(bootstrap, PARTITIONS)
    gw = procs.gateway({**env, "BINDWATCH_PUSH_TOKENS": TOKEN}, logdir, f"gateway-{tag}")
    wk = procs.worker({**env, **LIVE_ENV}, logdir, f"worker-{tag}")
    return s, gw, wk


def _alerts(bootstrap: str, topic: str) -> list[Alert]:
    from schemas import decode
    from tests.support.kafka import consume

    return [decode(Alert, r.payload) for r in consume(bootstrap, topic, timeout=6)]


def _iso(text: str) -> str:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC).isoformat()


def _belongs(a: Alert, numbers: set[str]) -> bool:
    return a.caller in numbers or a.did in numbers


def run_live(bootstrap: str, logdir: Path) -> dict[str, dict[str, int]]:
    from tests.support import procs

    scs = {sc.key: sc for sc in scenarios()}
    out: dict[str, dict[str, int]] = {}
    # the per-number scenarios: one gateway and worker, each scenario's pushes one at a time
    s, gw, wk = _stack(bootstrap, "numbers", logdir)
    with procs.running(gw, wk, timeout=180):
        url = gw.url("/v1/nxcloud/binding-failures")
        sent: dict[str, list[Push]] = {}
        for key in ("retry", "two", "scan", "hot", "storm"):
            sent[key] = scs[key].pushes(int(time.time() * 1000))
            asyncio.run(_post(url, sent[key], concurrent=False))
        total = sum(len(v) for v in sent.values())
        _wait("the per-number scenarios processed", lambda: _processed(wk, "did") >= total)
        time.sleep(2)
        alerts = _alerts(bootstrap, s.alerts_topic)
    for key, pushes in sent.items():
        numbers = {p.caller for p in pushes} | {p.did for p in pushes}
        out[key] = asdict(figures(a for a in alerts if _belongs(a, numbers)))
    print({k: v["paged"] for k, v in out.items()}, file=sys.stderr)
    # the outage burst: its own gateway and worker; the quiet hour, then the waves, each judged before the next
    s, gw, wk = _stack(bootstrap, "burst", logdir)
    sc = scs["burst"]
    with procs.running(gw, wk, timeout=180):
        import httpx

        url = gw.url("/v1/nxcloud/binding-failures")
        start = int(time.time() * 1000)
        quiet = quiet_hour(start)
        asyncio.run(_post(url, quiet, concurrent=True))
        _wait("the quiet hour processed", lambda: _processed(wk, "did") >= len(quiet))
        done = len(quiet)
        in_window = 0
        waves = sc.waves(start)
        first = datetime.fromtimestamp(waves[0][0].ts / 1000, tz=UTC).replace(second=0).isoformat()

        def judged() -> bool:
            """The DID stage processed the wave, and the aggregator merged (and judged) the caller stage's counts
            of it: the overview counts the burst's failures so far (the quiet hour ended minutes before it)."""
            doc = httpx.get(wk.url("/v1/overview"), timeout=10).json()
            burst = sum(m["newFailures"] for m in doc["minutes"] if _iso(m["minute"]) >= first)
            return _processed(wk, "did") >= done and burst == in_window

        for wave in waves:
            asyncio.run(_post(url, wave, concurrent=True))
            done += len(wave)
            in_window += len(wave)
            _wait("a wave counted and judged", judged, timeout=60)
            time.sleep(0.5)  # the aggregator sets the known outage after its alert is acknowledged
            print(f"burst: {in_window} pushes counted and judged", file=sys.stderr)
        time.sleep(2)
        alerts = _alerts(bootstrap, s.alerts_topic)
    out["burst"] = asdict(figures(alerts))
    return out


def live() -> dict[str, Any]:
    from tests.support.broker import provide

    port = int(os.environ.get("BINDWATCH_NOISE_KAFKA_PORT", "20592"))
    t0 = time.monotonic()
    broker = provide(port)
    try:
        logdir = ROOT / "var" / "noise-live"
        logdir.mkdir(parents=True, exist_ok=True)
        figs = run_live(broker.bootstrap, logdir)
    finally:
        broker.close()
    return {
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _commit(),
        "where": f"Kafka from {broker.source}, {time.monotonic() - t0:.0f} s",
        "figures": figs,
    }


def main(argv: list[str]) -> int:
    if "--check" in argv:
        if OUT.read_text() != report():
            print(f"{OUT} is out of date: run .venv/bin/python docs/noise_report.py", file=sys.stderr)
            return 1
        return 0
    text = report(live() if "--live" in argv else None)
    OUT.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
