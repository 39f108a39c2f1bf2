"""Records of the internal by-DID topic: many failures per record, all for DIDs of one partition.

The caller stage used to forward each event as its own record, so every event cost a produce, a fetch and a
pass through Faust's per-message machinery twice. It now sends one *bundle* per DID partition per batch:

    {"v": 1, "e": [[did, caller, occurred_at_epoch_ms, requestId], ...]}

sent to partition ``partition_for(did)``, the same partition the producer's default partitioner would pick
for the key ``did`` (Kafka's murmur2), so the DID table, its changelog and query routing agree with a
per-event forward keyed by DID. The topic is internal (not a public contract); a record in the old
per-event format (one ``BindingFailureEvent`` JSON) is still read, so an upgrade loses nothing in flight.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final, NamedTuple

import orjson
from pydantic import ValidationError

from schemas import BindingFailureEvent
from schemas import decode as decode_event
from schemas.events import BindingFailureFacts

if TYPE_CHECKING:
    from mypy_extensions import i64  # machine-word ints in the compiled module; plain ints interpreted

TUPLE_NEW: Final[Any] = tuple.__new__  # as stream.rules.TUPLE_NEW: builds an Entry in C (this module imports no rules)

VERSION: Final = 1
MAX_ENTRIES: Final = 500
"""Entries per record: about 80 bytes each, so a record stays far below Kafka's 1 MiB default."""


class Entry(NamedTuple):
    did: str
    caller: str
    ts: int  # occurrence time, epoch ms
    rid: str


M32: Final = 0xFFFFFFFF
MURMUR_M: Final = 0x5BD1E995


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (``org.apache.kafka.common.utils.Utils.murmur2``), equal to aiokafka's
    ``aiokafka.partitioner.murmur2`` for every input (``tests/unit/test_bundle.py`` compares them). Written here so
    that it is compiled with this module (``stream.native``): aiokafka's is interpreted, ~2 µs per number, and most
    forwarded DIDs of a backlog are new to ``partition_for``'s cache.

    The locals are ``i64``: compiled, they are machine words. As plain ints a product (up to 63 bits) left the
    62-bit integers mypyc keeps unboxed for a Python long each step: 1.1 µs per number, 2.5% of a drain's CPU;
    as ``i64`` 0.05 µs (every product stays below 2**63: a 32-bit value times a 31-bit constant). Interpreted,
    ``i64`` is only an annotation (imported for the type checker), and the same code runs on ints."""
    length: i64 = len(data)
    h: i64 = (0x9747B28C ^ length) & M32
    end: i64 = length & ~3
    i: i64 = 0
    while i < end:
        k: i64 = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24)
        k = (k * MURMUR_M) & M32
        k ^= k >> 24
        k = (k * MURMUR_M) & M32
        h = ((h * MURMUR_M) & M32) ^ k
        i += 4
    extra: i64 = length & 3
    if extra >= 3:
        h ^= data[end + 2] << 16
    if extra >= 2:
        h ^= data[end + 1] << 8
    if extra >= 1:
        h = ((h ^ data[end]) * MURMUR_M) & M32
    h ^= h >> 13
    h = (h * MURMUR_M) & M32
    return h ^ (h >> 15)


def partition_for(did: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives the key ``did`` (what Faust routes table queries by).

    It runs for every forwarded entry and every firing subject in each outage partial. Compiled it takes
    0.07 µs, less than an ``lru_cache`` around it did (0.12 µs a hit, 0.45 a miss, and most DIDs of a backlog
    were misses), so it is not cached."""
    return (murmur2(did.encode()) & 0x7FFFFFFF) % partitions


def entry_of(event: BindingFailureEvent | BindingFailureFacts) -> Entry:
    """The event's entry, built in C (``stream.rules.TUPLE_NEW``, equal to ``Entry(...)``)."""
    e: Entry = TUPLE_NEW(Entry, (event.did, event.caller, int(event.occurredAt.timestamp() * 1000), event.requestId))
    return e


def encode(entries: Sequence[Entry]) -> bytes:
    return orjson.dumps({"v": VERSION, "e": [tuple(e) for e in entries]})  # orjson refuses NamedTuple


def chunks(entries: Sequence[Entry], size: int = MAX_ENTRIES) -> Iterator[Sequence[Entry]]:
    for i in range(0, len(entries), size):
        yield entries[i : i + size]


def decode(raw: bytes) -> list[Entry]:
    """The entries of a by-DID record; ``ValueError`` naming what is wrong if it is neither format.

    An event with ``code`` 0 (not a failure) yields no entry.
    """
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"expected a JSON object, got {type(doc).__name__}")
    if "v" not in doc:  # the per-event format of earlier versions
        try:
            event = decode_event(BindingFailureEvent, raw)
        except ValidationError as exc:
            raise ValueError(f"neither a bundle nor an event: {exc.errors(include_input=False)[:3]}") from None
        return [entry_of(event)] if event.code != 0 else []
    if doc["v"] != VERSION:
        raise ValueError(f"unknown bundle version {doc['v']!r} (this worker reads {VERSION})")
    items = doc.get("e")
    if not isinstance(items, list):
        raise ValueError("bundle without an entry list 'e'")
    out = []
    for i, item in enumerate(items):
        if not (
            isinstance(item, list)
            and len(item) == 4
            and isinstance(item[0], str)
            and isinstance(item[1], str)
            and type(item[2]) is int
            and isinstance(item[3], str)
        ):
            shape = [type(x).__name__ for x in item] if isinstance(item, list) else type(item).__name__
            # The types only: the entry holds phone numbers, which stay out of logs.
            raise ValueError(f"entry {i} is not [did, caller, epoch_ms, requestId] (str, str, int, str): {shape}")
        out.append(TUPLE_NEW(Entry, item))  # Entry(*item), built in C (stream.rules.TUPLE_NEW)
    return out
