"""Speed of the tamper-evident audit log: append and verify >= 100k records.

Not a test (``python benchmarks/bench_auditlog.py [--records N] [--store URL]``). Stores: chDB in a
temporary directory, and the server named by ``--store`` or ``FAIRWATCH_CLICKHOUSE`` when set.
Baseline, in the same run: reading the same rows with a plain ``SELECT`` (what any verification
must at least do), so ``verify`` is reported as a ratio to it, beside its records per second.
Writes ``benchmarks/results/auditlog.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from fairwatch.store.auditlog import COLUMNS, append_records, verify
from fairwatch.store.clickhouse import open_store
from fairwatch.store.migrations import migrate

RESULTS = Path(__file__).parent / "results" / "auditlog.json"
T0 = datetime(2026, 1, 5, tzinfo=timezone.utc)


def snapshot_like(i: int) -> dict:
    """A record the size of an estimate snapshot row."""
    return {"snapshot_at": T0, "window_seconds": 3600, "deployment": f"gate-{i % 4}", "algorithm": "algo-1",
            "mode": "verification", "attribute": "sex&race", "group_label": f"F&G{i % 8}", "impostor": 1000.0 + i,
            "false_match": 7.0, "genuine": 900.0, "false_non_match": 12.0, "fmr": 0.007, "fmr_low": 0.0028,
            "fmr_high": 0.0144, "fnmr": 0.0133, "fnmr_low": 0.0069, "fnmr_high": 0.0232, "status": "ok"}


def run(url: str, records: int, batch: int) -> dict:
    store = open_store(url)
    if "chdb" not in url:  # a database of its own, fresh each run
        store.execute(f"DROP DATABASE IF EXISTS {store.database}")
        store = open_store(url)
    migrate(store)
    start = time.perf_counter()
    for first in range(0, records, batch):
        append_records(store, "snapshot", [snapshot_like(i) for i in range(first, min(first + batch, records))],
                       now=T0 + timedelta(seconds=first // batch), key=b"bench-key")
    appended = time.perf_counter() - start
    window = (T0, T0 + timedelta(days=1))
    start = time.perf_counter()
    rows = store.query(f"SELECT {', '.join(COLUMNS)} FROM audit_log WHERE recorded_at >= %(s)s AND recorded_at < %(e)s"
                       " ORDER BY chain, seq", {"s": window[0], "e": window[1]})
    baseline = time.perf_counter() - start
    start = time.perf_counter()
    result = verify(store, *window, key=b"bench-key")
    verified = time.perf_counter() - start
    assert result.ok and result.checked == records == len(rows), result.to_dict()
    server = ".".join(map(str, store.server_version()))
    if "chdb" not in url:
        store.execute(f"DROP DATABASE {store.database}")
    store.close()
    return {"store": url.split("://")[0], "server_version": server, "records": records,
            "append_records_per_s": round(records / appended), "verify_records_per_s": round(records / verified),
            "verify_seconds": round(verified, 3), "select_baseline_seconds": round(baseline, 3),
            "verify_vs_select": round(verified / baseline, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1_000, help="records per append_records call")
    parser.add_argument("--store", default=os.environ.get("FAIRWATCH_CLICKHOUSE"))
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        results.append(run(f"chdb://{tmp}/chdb", args.records, args.batch))
    if args.store:
        from urllib.parse import urlparse, urlunparse

        results.append(run(urlunparse(urlparse(args.store)._replace(path="/fairwatch_bench_audit")), args.records,
                           args.batch))
    for r in results:
        print(f"{r['store']:>10} {r['server_version']:>10}  {r['records']} records: append {r['append_records_per_s']}/s,"
              f" verify {r['verify_records_per_s']}/s ({r['verify_seconds']} s) = {r['verify_vs_select']}x a plain"
              f" SELECT of the rows ({r['select_baseline_seconds']} s)")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"machine": platform.platform(), "cpus": os.cpu_count(), "results": results},
                                  indent=1) + "\n")


if __name__ == "__main__":
    main()
