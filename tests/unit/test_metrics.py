"""``stream.metrics``: what the worker measures of itself beyond its counts (the cycle collector's time)."""

from __future__ import annotations

import gc

from stream.metrics import StreamMetrics


def seconds(m: StreamMetrics, generation: int) -> float:
    value = m.registry.get_sample_value("bindwatch_stream_gc_seconds_total", {"generation": str(generation)})
    assert value is not None
    return value


def test_each_collection_is_timed_under_the_oldest_generation_it_collected() -> None:
    m = StreamMetrics()
    was_enabled = gc.isenabled()
    gc.disable()  # only the collections this test asks for (explicit collections run while disabled)
    on_gc = m.time_gc()
    try:
        assert [seconds(m, g) for g in range(3)] == [0.0, 0.0, 0.0]
        gc.collect(2)
        full = seconds(m, 2)
        gc.collect(0)
        assert full > 0 and seconds(m, 2) == full and seconds(m, 0) > 0 and seconds(m, 1) == 0
    finally:
        gc.callbacks.remove(on_gc)
        if was_enabled:
            gc.enable()
    young = seconds(m, 0)
    gc.collect(0)
    assert seconds(m, 0) == young  # the callback removed: nothing more is added
