"""Stream: the live worker and the paths that feed the core from Kafka or files.

The faust app (thin agents), the batch processor it hands raw messages to, the offset ledger,
the sink executor that runs ClickHouse writes off the event loop, health and metrics endpoints,
topic creation, worker settings from the environment, and file replay.
"""
