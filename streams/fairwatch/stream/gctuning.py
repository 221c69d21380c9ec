"""Garbage-collector settings for the worker's processes (the faust worker and its sink process)."""

from __future__ import annotations

import gc


def tune_garbage_collector() -> None:
    """Fewer cyclic collections for a process that allocates millions of short-lived objects.

    With CPython's default thresholds the worker's batches trigger full collections that walk
    every long-lived object (faust, aiokafka, the joins) again and again: measured, half of the
    batch time (benchmarks/bench_pipeline.py). Objects alive at start are frozen out of the
    collector's walk; cycles are still collected, less often.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)
