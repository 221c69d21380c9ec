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


def coverage_arguments(description: str, regimes, seeds: int, quick_seeds: int, extra=None):
    """The command line of a coverage benchmark: ``--seeds`` (default ``seeds``, ``quick_seeds``
    with ``--quick``), ``--workers``, ``--regimes`` (a subset of ``regimes``); ``extra(parser)``
    adds the benchmark's own options. ``args.seeds`` is the number to run."""
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--seeds", type=int, default=None,
                        help=f"simulated runs per regime (default {seeds}; {quick_seeds} with --quick)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--regimes", nargs="+", choices=list(regimes), default=list(regimes))
    if extra is not None:
        extra(parser)
    args = parser.parse_args()
    args.seeds = args.seeds or (quick_seeds if args.quick else seeds)
    return args


def over_seeds(pool, run_seed, regime: str, seeds: int, chunksize: int = 1) -> list:
    """``run_seed(regime, seed)`` for seeds 1 to ``seeds``, on ``pool``, in seed order."""
    return list(pool.map(run_seed, [regime] * seeds, range(1, seeds + 1), chunksize=chunksize))
