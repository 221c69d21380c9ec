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
