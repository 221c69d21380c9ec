"""Where a simulation goes: JSONL files, its ground truth, or the Kafka input topics (single records or batch envelopes through the producer SDK)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable, Protocol, Sequence

import numpy as np

from fairwatch.contracts.kafka_link import KafkaLink
from fairwatch.contracts.topics import DEFAULT_PREFIX
from fairwatch.sim.simulator import ProgressFn, Simulation

CHUNK = 50_000


def write_truth(sim: Simulation, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    truth = sim.truth()
    if sim.scenario.acquisition is not None:
        from fairwatch.sim.acquisitions import truth_records

        truth["acquisition"] = truth_records(sim.model, sim.scenario.acquisition)
    path.write_text(json.dumps(truth, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    return path


def write_jsonl(sim: Simulation, out_dir: str | os.PathLike, progress: ProgressFn | None = None) -> dict[str, Path]:
    """Write ``events.jsonl`` (event-time order), ``outcomes.jsonl`` (arrival order) and ``truth.json``;
    with an ``acquisition`` block in the scenario, ``acquisitions.jsonl`` too (:mod:`fairwatch.sim.acquisitions`),
    and with ``uses``, ``uses.jsonl`` (:mod:`fairwatch.sim.uses`)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"events": out / "events.jsonl", "outcomes": out / "outcomes.jsonl", "truth": out / "truth.json"}
    for name, n, render in (("events", sim.n_events, sim.event_lines), ("outcomes", sim.n_outcomes, sim.outcome_lines)):
        with open(paths[name], "wb") as handle:
            for lo in range(0, n, CHUNK):
                lines = render(np.arange(lo, min(n, lo + CHUNK)))
                handle.write(b"\n".join(lines) + b"\n")
                if progress:
                    progress(len(lines))
    if sim.scenario.acquisition is not None:
        from fairwatch.sim.acquisitions import simulate_acquisitions

        paths["acquisitions"] = out / "acquisitions.jsonl"
        lines = simulate_acquisitions(sim).lines()
        paths["acquisitions"].write_bytes(b"\n".join(lines) + b"\n" if lines else b"")
    if sim.scenario.uses is not None:
        from fairwatch.sim.uses import use_lines

        paths["uses"] = out / "uses.jsonl"
        paths["uses"].write_bytes(b"".join(line + b"\n" for line in use_lines(sim.scenario)))
    write_truth(sim, paths["truth"])
    return paths


class Writer(Protocol):
    def send(self, topic: str, key: bytes, value: bytes) -> None: ...
    def close(self) -> None: ...


class KafkaWriter:
    """The smallest kafka-python producer that will do; :func:`open_kafka_writer` is the seam to swap it."""

    def __init__(self, bootstrap: str, link: KafkaLink | None = None):
        from kafka import KafkaProducer

        link = link or KafkaLink.from_env()  # the FAIRWATCH_KAFKA_* settings of the environment
        self._producer = KafkaProducer(bootstrap_servers=bootstrap, client_id="fairwatch-simulate", acks="all",
                                       linger_ms=20, batch_size=512 * 1024, **link.kafka_python_kwargs())
        self._error: BaseException | None = None

    def _failed(self, exc: BaseException) -> None:
        self._error = self._error or exc

    def send(self, topic: str, key: bytes, value: bytes) -> None:
        if self._error:
            raise RuntimeError(f"Kafka delivery failed: {self._error}")
        self._producer.send(topic, key=key, value=value).add_errback(self._failed)

    def close(self) -> None:
        self._producer.flush()
        self._producer.close()
        if self._error:
            raise RuntimeError(f"Kafka delivery failed: {self._error}")


class BatchingKafkaWriter:
    """Records in batch envelopes through the producer SDK (:mod:`fairwatch.producer`), as a real
    face-recognition system should send them; the key of each record is its event_id."""

    def __init__(self, bootstrap: str, prefix: str, max_records: int, link: KafkaLink | None = None):
        from fairwatch.producer import FairwatchProducer

        self._producer = FairwatchProducer(bootstrap, topic_prefix=prefix, max_records=max_records, validate=False,
                                           link=link, client_id="fairwatch-simulate")

    def send(self, topic: str, key: bytes, value: bytes) -> None:
        self._producer.send_encoded(topic, key.decode(), value)

    def close(self) -> None:
        self._producer.close()


def open_kafka_writer(bootstrap: str, prefix: str = DEFAULT_PREFIX, batch: int = 1,
                      link: KafkaLink | None = None) -> Writer:
    """Single-record messages (``batch`` = 1) or batch envelopes of up to ``batch`` records; ``link``:
    how to connect (default: the FAIRWATCH_KAFKA_* settings of the environment)."""
    return KafkaWriter(bootstrap, link) if batch <= 1 else BatchingKafkaWriter(bootstrap, prefix, batch, link)


def publish(sim: Simulation, writer: Writer, *, prefix: str = DEFAULT_PREFIX, rate: float = 0.0,
            progress: ProgressFn | None = None, clock: Callable[[], float] = time.monotonic,
            sleep: Callable[[float], None] = time.sleep,
            acquisitions: tuple[np.ndarray, Sequence[bytes], Sequence[bytes]] | None = None) -> dict[str, int]:
    """Send events and outcomes interleaved in time order (an outcome after the events it follows).

    Topics ``{prefix}match-events`` / ``{prefix}verified-outcomes``, key = event_id. ``rate`` > 0
    paces match events to that many per second of wall time; 0 sends as fast as possible.
    ``acquisitions``: acquisition attempts as (times in epoch microseconds, keys, lines), sent to
    ``{prefix}acquisitions`` in the same time order (an event after its attempts).
    ``writer`` is closed (flushed) at the end, also on error.
    """
    topics = (f"{prefix}acquisitions", f"{prefix}match-events", f"{prefix}verified-outcomes")  # by kind
    a_times, a_keys, a_lines = acquisitions if acquisitions is not None else (np.zeros(0, np.int64), (), ())
    if not len(a_times) == len(a_keys) == len(a_lines):
        raise ValueError("acquisitions: as many times, keys and lines")
    n_attempts = len(a_times)
    times = np.concatenate([sim.time, sim.o_time, np.asarray(a_times, dtype=sim.time.dtype)])
    # at equal times: an attempt, then the event, then its outcomes
    kinds = np.concatenate([np.ones(sim.n_events, np.int8), np.full(sim.n_outcomes, 2, np.int8),
                            np.zeros(n_attempts, np.int8)])
    positions = np.concatenate([np.arange(sim.n_events), np.arange(sim.n_outcomes), np.arange(n_attempts)])
    order = np.lexsort((kinds, times))
    sent_events, began, step = 0, clock(), CHUNK // 5
    try:
        for lo in range(0, len(order), step):
            chunk = order[lo:lo + step]
            ac_pos, ev_pos, oc_pos = (positions[chunk][kinds[chunk] == k] for k in range(3))
            records = (iter([(a_keys[k], a_lines[k]) for k in ac_pos.tolist()]),
                       iter(zip(sim.event_keys(ev_pos), sim.event_lines(ev_pos))),
                       iter(zip(sim.outcome_keys(oc_pos), sim.outcome_lines(oc_pos))))
            for kind in kinds[chunk].tolist():
                key, value = next(records[kind])
                if kind == 1:
                    if rate > 0 and sent_events % 50 == 0:  # pace in small steps, not per message
                        ahead = began + sent_events / rate - clock()
                        if ahead > 0:
                            sleep(ahead)
                    sent_events += 1
                writer.send(topics[kind], key, value)
            if progress:
                progress(len(chunk))
    finally:
        writer.close()
    return {"events": sim.n_events, "outcomes": sim.n_outcomes, **({"acquisitions": n_attempts} if acquisitions is not None else {})}
