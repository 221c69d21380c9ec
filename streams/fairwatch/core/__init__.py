"""Core: the statistics, pure Python + numpy/scipy (no Kafka, no ClickHouse, no asyncio).

The label-delay join, per-group counts in event-time buckets, intervals, rate estimates with
their status, demographic differentials, and :class:`~fairwatch.core.monitor.Monitor` chaining
them. Batches in, batches out: the worker, file replay and tests drive the same code.
"""
