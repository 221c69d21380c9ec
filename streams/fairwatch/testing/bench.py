"""Shared by the benchmarks: where their results go."""

from __future__ import annotations

import json
import time
from pathlib import Path


def write_results(path: Path, result: dict, started: float) -> None:
    """Write ``result`` (with the seconds since ``started``) as JSON to ``path`` and say so."""
    result["seconds"] = time.perf_counter() - started
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    print(f"written {path} in {result['seconds']:.1f} s")


def envelopes(lines: list[bytes], per_envelope: int):
    """(index of its first line, a batch envelope of ``per_envelope`` of ``lines``), in order: how
    the benchmarks put simulated records through the contract's decoders."""
    for lo in range(0, len(lines), per_envelope):
        yield lo, (b'{"batch_version":1,"bucket":0,"partitions":1,"records":['
                   + b",".join(lines[lo:lo + per_envelope]) + b"]}")


def feed(monitor, records: list, batch: int) -> None:
    """``records`` into a Monitor (the replay's join and counts) ``batch`` at a time; a rejection fails."""
    for lo in range(0, len(records), batch):
        rejected = monitor.update(records[lo:lo + batch]).rejected
        if rejected:
            raise RuntimeError(f"the join rejected {len(rejected)} simulated records: {rejected[0].rejection}")
