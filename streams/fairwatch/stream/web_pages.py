"""The worker's web pages: /metrics (Prometheus), /healthz, and /debug pages for diagnosing stalls."""

from __future__ import annotations

import asyncio

import faust

from fairwatch.stream.committer import LedgerCommitter
from fairwatch.stream.worker_metrics import WorkerMetrics


def await_chain(task: asyncio.Task) -> str:
    """`outer:line -> inner:line ...`: the coroutines a task is suspended in (get_stack shows one)."""
    links, coro = [], task.get_coro()
    while coro is not None and len(links) < 30:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is None:
            links.append(type(coro).__name__)
            break
        links.append(f"{frame.f_code.co_name}:{frame.f_lineno}")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return " -> ".join(links)


def register_pages(app: faust.App, metrics: WorkerMetrics, committer: LedgerCommitter, kinds: dict[str, str],
                   debug: bool = False) -> None:
    """Add the pages to the worker's web server (``kinds``: input topic -> record kind); the /debug
    pages only with ``debug`` (``FAIRWATCH_DEBUG=1``)."""

    @app.page("/metrics")
    async def prometheus(web, request):
        # aiohttp refuses a charset inside content_type; Prometheus text format 0.0.4 is UTF-8 anyway
        return web.bytes(metrics.exposition(), content_type="text/plain; version=0.0.4")

    @app.page("/healthz")
    async def health(web, request):
        assigned = app.consumer.assignment() if app.consumer else set()
        owned = sorted([kinds[tp.topic], tp.partition] for tp in assigned if tp.topic in kinds)
        return web.json({"status": "ok", "input_partitions": owned})

    if not debug:
        return

    @app.page("/debug/offsets")
    async def debug_offsets(web, request):
        ledger = committer.ledger.describe()
        return web.json({
            f"{tp.topic}:{tp.partition}": {**state, "highwater": app.consumer.highwater(tp)}
            for tp, state in sorted(ledger.items())
        })

    @app.page("/debug/tasks")
    async def debug_tasks(web, request):
        # where every coroutine of the worker's loops waits: for diagnosing stalls in production
        loops = {"main": asyncio.get_running_loop()}
        thread = getattr(app.consumer, "_thread", None)
        if thread is not None and getattr(thread, "thread_loop", None) is not None:
            loops["consumer_thread"] = thread.thread_loop
        out = {"commit_in_progress": app.consumer._commit_fut is not None, "rebalancing": app.rebalancing}
        for name, loop in loops.items():
            out[name] = sorted(await_chain(task) for task in asyncio.all_tasks(loop))
        return web.json(out)
