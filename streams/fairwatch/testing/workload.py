"""A deterministic test workload and its brute-force oracle, written independently of the core.

The oracle takes the final (event, latest outcome) pairs and counts them with plain loops; it
shares nothing with ``fairwatch.core.join`` / ``fairwatch.core.counts`` / the ClickHouse recompute.
"""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from fairwatch.contracts.topics import MATCH_EVENTS, VERIFIED_OUTCOMES

T0 = datetime(2026, 11, 25, 6, 0, tzinfo=timezone.utc)
SEXES = ("F", "M")
RACES = ("Black", "White", "Asian", "Indigenous")
AGES = ("18-29", "30-49", "50+")


@dataclass
class Workload:
    events: dict[str, dict] = field(default_factory=dict)  # event_id -> match event document
    outcomes: dict[str, list[dict]] = field(default_factory=dict)  # event_id -> outcome documents
    # (kind, key, value) in delivery order, duplicates and malformed ones included
    messages: list[tuple[str, bytes | None, bytes]] = field(default_factory=list)
    malformed: list[tuple[str, bytes | None, bytes]] = field(default_factory=list)


MALFORMED = [
    b"{not json",
    b'{"event_id": ""}',
    b"[]",
    b'{"event_id": "x", "score": NaN}',
    b"\xff\xfe\x00",
    b'{"event_id": "e", "verified_at": "yesterday"}',
]


def make_workload(n_events: int, seed: int, *, outcome_share: float = 0.9, orphan_share: float = 0.01,
                  revision_share: float = 0.03, duplicate_share: float = 0.01, malformed_share: float = 0.005,
                  sampled_share: float = 0.3, hours: float = 6.0, deployments: int = 2,
                  search_share: float = 0.5, reference_share: float = 0.0, start: datetime = T0,
                  drift: tuple[str, float, float] | None = None) -> Workload:
    """Events over ``hours`` from ``start``. ``drift`` (race, factor, hours): that race's FMR times
    the factor from that many hours after ``start`` on. ``search_share``: identification events that carry a candidate list (their mated outcomes
    name the mate's rank). ``reference_share``: verification events that carry the reference's labels
    (:func:`_reference`; drawn from a generator of their own, so the rest of the workload is the
    same with or without them)."""
    rng = random.Random(seed)
    references = random.Random(seed ^ 0x5EF)
    w = Workload()
    for i in range(n_events):
        event_id = f"ev-{seed}-{i:08d}"
        occurred = start + timedelta(seconds=rng.uniform(0, hours * 3600))
        impostor = rng.random() < 0.7
        race = rng.choice(RACES)
        # per-group error rates differ, as in NIST FRVT Part 3
        fmr = {"Black": 0.03, "White": 0.005, "Asian": 0.015, "Indigenous": 0.04}[race]
        if drift and race == drift[0] and occurred >= start + timedelta(hours=drift[2]):
            fmr *= drift[1]
        error = rng.random() < (fmr if impostor else 0.05)
        decision = ("match" if error else "non_match") if impostor else ("non_match" if error else "match")
        w.events[event_id] = event = {
            "event_id": event_id, "occurred_at": occurred.isoformat().replace("+00:00", "Z"),
            "deployment": f"site-{rng.randrange(deployments)}", "algorithm": "algo-1",
            "mode": "verification" if rng.random() < 0.8 else "identification",
            "score": round(rng.uniform(0, 1), 4), "threshold": 0.6, "decision": decision,
            "subject": {"sex": rng.choice(SEXES), "race": race, "age": rng.choice(AGES)},
        }
        if event["mode"] == "verification" and references.random() < reference_share:
            event["reference"] = _reference(references, event["subject"])
        mate_rank = None
        # a search with its candidate list (no draw at all when search_share is 0: the workloads made
        # before searches had lists stay as they were)
        if event["mode"] == "identification" and search_share and rng.random() < search_share:
            mate_rank = _candidate_list(rng, event, impostor, error)
        if rng.random() < outcome_share:
            w.outcomes[event_id] = _outcomes(rng, event_id, occurred, impostor, revision_share, sampled_share,
                                             mate_rank)
    for i in range(int(n_events * orphan_share)):  # outcomes whose event never comes
        event_id = f"orphan-{seed}-{i}"
        w.outcomes[event_id] = _outcomes(rng, event_id, start, True, 0, 0)
    for event_id, doc in w.events.items():
        w.messages.append((MATCH_EVENTS, event_id.encode(), json.dumps(doc).encode()))
    for event_id, docs in w.outcomes.items():
        w.messages += [(VERIFIED_OUTCOMES, event_id.encode(), json.dumps(d).encode()) for d in docs]
    rng.shuffle(w.messages)
    for _ in range(int(len(w.messages) * duplicate_share)):
        w.messages.insert(rng.randrange(len(w.messages)), rng.choice(w.messages))
    for i in range(int(len(w.messages) * malformed_share)):
        kind = rng.choice((MATCH_EVENTS, VERIFIED_OUTCOMES))
        bad = (kind, f"bad-{seed}-{i}".encode(), MALFORMED[i % len(MALFORMED)] + f" #{i}".encode())
        w.malformed.append(bad)
        w.messages.insert(rng.randrange(len(w.messages)), bad)
    return w


def _reference(rng, subject: dict) -> dict:
    """A reference's labels: the subject's own (a same-group impostor, or the genuine reference) in
    half the cases, else drawn at random; one reference in ten lacks the race label."""
    if rng.random() < 0.5:
        labels = dict(subject)
    else:
        labels = {"sex": rng.choice(SEXES), "race": rng.choice(RACES), "age": rng.choice(AGES)}
    if rng.random() < 0.1:
        del labels["race"]
    return labels


def _candidate_list(rng, event: dict, impostor: bool, error: bool) -> int | None:
    """Give an identification event a candidate list that agrees with its decision and error
    (threshold 0.6); return the mate's rank in it (None: non-mated, or the mate is not listed).
    A missed mated search is one of: mate absent, mate listed below the threshold, or an impostor
    above the threshold with the mate absent (judged a match, yet missed)."""
    above = lambda: round(rng.uniform(0.6, 1.0), 4)  # noqa: E731
    below = lambda: round(rng.uniform(0.0, 0.5999), 4)  # noqa: E731
    mate_score = None
    if impostor:
        scores = [above() for _ in range(rng.randrange(1, 4))] if error else [below() for _ in range(rng.randrange(0, 3))]
    elif not error:
        mate_score = above()
        scores = [mate_score] + [rng.choice((above, below))() for _ in range(rng.randrange(0, 3))]
    else:
        case = rng.randrange(3)
        if case == 1:
            mate_score = below()
        scores = [below() for _ in range(rng.randrange(0, 3))] if case < 2 else [above()]
        if mate_score is not None:
            scores.append(mate_score)
    order = sorted(range(len(scores)), key=lambda k: -scores[k])
    candidates = [{"rank": rank, "score": scores[k], "candidate_id": f"face-{rng.randrange(10**6)}-{rank}",
                   "groups": {"race": rng.choice(RACES)}} for rank, k in enumerate(order, start=1)]
    top = candidates[0]["score"] if candidates else round(rng.uniform(0.0, 0.5999), 4)
    event.update(candidates=candidates, score=top, decision="match" if top >= event["threshold"] else "non_match",
                 list_length=5, gallery_size=rng.randrange(1000, 10**6))
    if mate_score is None:
        return None
    return order.index(0 if not error else len(scores) - 1) + 1


def contrary(verdict: dict) -> dict:
    """The verdict with the other truth; a mated search's mate_rank goes (a non-mated verdict names
    no mate, and a verdict turned mated would not know it)."""
    out = {k: v for k, v in verdict.items() if k != "mate_rank"}
    out["truth"] = "genuine" if verdict["truth"] == "impostor" else "impostor"
    return out


def _outcomes(rng, event_id, occurred, impostor, revision_share, sampled_share, mate_rank=None) -> list[dict]:
    prob = 1.0 if rng.random() >= sampled_share else rng.choice((0.5, 0.25, 0.1))
    verified = occurred + timedelta(hours=rng.lognormvariate(1.0, 1.0))
    docs = [{"event_id": event_id, "verified_at": verified.isoformat().replace("+00:00", "Z"),
             "truth": "impostor" if impostor else "genuine", "reviewer": f"rev-{rng.randrange(20)}",
             "revision": 0, "inclusion_prob": prob}]
    if mate_rank is not None and not impostor:
        docs[0]["mate_rank"] = mate_rank
    if rng.random() < revision_share:  # a reviewer corrects the label
        docs.append({**contrary(docs[0]), "revision": 1,
                     "verified_at": (verified + timedelta(hours=2)).isoformat().replace("+00:00", "Z")})
    return docs


def oracle_counts(w: Workload, bucket_seconds: int = 60, intersections=(("sex", "race"),)) -> dict[tuple, list[float]]:
    """(deployment, algorithm, mode, attribute, group, bucket epoch s) -> 12 sums, by plain loops."""
    counts: dict[tuple, list[float]] = defaultdict(lambda: [0.0] * 12)
    for event_id, event in w.events.items():
        if event_id not in w.outcomes:
            continue
        outcome = max(w.outcomes[event_id], key=lambda d: d["revision"])
        occurred = datetime.fromisoformat(event["occurred_at"].replace("Z", "+00:00")).timestamp()
        bucket = int(occurred // bucket_seconds) * bucket_seconds
        subject = event["subject"]
        groups = [("*", "*")] + sorted(subject.items())
        for combo in intersections:
            if all(a in subject for a in combo):
                groups.append(("&".join(combo), "&".join(subject[a] for a in combo)))
        impostor = outcome["truth"] == "impostor"
        if impostor or "candidates" not in event:
            error = (event["decision"] == "match") if impostor else (event["decision"] == "non_match")
        else:  # a mated search with its list: missed unless the named mate is listed at or above the threshold
            rank = outcome.get("mate_rank")
            listed = event["candidates"]
            error = not (rank is not None and rank <= len(listed) and listed[rank - 1]["score"] >= event["threshold"])
        weight = 1.0 / outcome["inclusion_prob"]
        base = 0 if impostor else 6
        for attribute, group in groups:
            row = counts[(event["deployment"], event["algorithm"], event["mode"], attribute, group, bucket)]
            row[base] += 1
            row[base + 1] += error
            row[base + 2] += weight
            row[base + 3] += weight * error
            row[base + 4] += weight * weight
            row[base + 5] += weight * weight * error
    return dict(counts)


BAD_RECORDS = [  # records inside a valid batch envelope that the contract refuses
    {"event_id": ""},
    {"event_id": "bad-record", "truth": "maybe"},
    {"event_id": "bad-record", "occurred_at": "yesterday"},
    {"event_id": "bad-record", "score": "high", "subject": {}},
]


def compact(doc: dict) -> bytes:
    """How the worker re-encodes one record of a batch for dead-letter."""
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def mixed_batches(w: Workload, partitions: int, seed: int, *, batch_share: float = 0.7, max_records: int = 100,
                  bad_record_share: float = 0.003, misrouted_batches: int = 3):
    """The workload's messages as Kafka messages with explicit partitions, most in batch envelopes.

    Returns (messages, bad_records): messages are (kind, partition, key, value) in delivery order
    (single records, batches, whole-message garbage, a few batches sent to the wrong partition);
    bad_records are the (kind, compact bytes) of the refused records placed inside batches.
    Partitions come from Kafka's murmur2 as implemented by kafka-python (not by fairwatch).
    """
    from kafka.partitioner.default import murmur2

    def home(event_id: str) -> int:
        return (murmur2(event_id.encode()) & 0x7FFFFFFF) % partitions

    rng = random.Random(seed)
    out, bad_records, open_batches = [], [], {}

    def close(kind: str, partition: int, target: int | None = None) -> None:
        records = open_batches.pop((kind, partition))
        envelope = {"batch_version": 1, "bucket": partition, "partitions": partitions, "records": records}
        out.append((kind, partition if target is None else target, b"bucket-%d" % partition, json.dumps(envelope).encode()))

    for kind, key, value in w.messages:
        if (kind, key, value) in w.malformed or rng.random() >= batch_share:
            out.append((kind, home(key.decode()) if key else 0, key, value))
            continue
        doc = json.loads(value)
        partition = home(doc["event_id"])
        batch = open_batches.setdefault((kind, partition), [])
        batch.append(doc)
        if rng.random() < bad_record_share * 10 and len(bad_records) < len(w.messages) * bad_record_share + 1:
            bad = {**BAD_RECORDS[len(bad_records) % len(BAD_RECORDS)], "n": len(bad_records)}
            batch.insert(rng.randrange(len(batch) + 1), bad)
            bad_records.append((kind, compact(bad)))
        if len(batch) >= rng.randint(max_records // 2, max_records):
            # a few batches go to a partition that is not theirs: the worker must forward them
            target = (partition + 1) % partitions if misrouted_batches > 0 and rng.random() < 0.01 else None
            misrouted_batches -= target is not None
            close(kind, partition, target)
    for kind, partition in list(open_batches):
        close(kind, partition)
    return out, bad_records


def race_drift_scenario(name: str, seed: int, delay_median_hours: float, searches: bool = False) -> str:
    """A scenario YAML: one gate over 3 h, every comparison verified after a lognormal delay, and
    race=Black's FMR tripled from 1.5 h on (the detection and replay tests' drift). ``searches``:
    every comparison is an identification search returning a candidate list (at most 5), with the
    same rates as FPIR and FNIR."""
    modes = ", identification_share: 1.0, list_length: 5, gallery_size: 100000" if searches else ""
    return f"""
name: {name}
seed: {seed}
start: "2026-11-25T06:00:00Z"
duration_hours: 3
events: 100000
attributes: {{race: {{White: 0.5, Black: 0.25, Asian: 0.25}}}}
algorithms:
  algo-1:
    fmr: {{base: 0.01, factors: {{race: {{Black: 2.0, Asian: 1.5}}}}}}
    fnmr: {{base: 0.02}}
deployments: [{{name: gate-a, algorithm: algo-1, threshold: 3.0, impostor_share: 0.5{modes}}}]
verification: {{match_prob: 1.0, non_match_prob: 1.0, delay_hours: {{median: {delay_median_hours}, sigma: 0.5}},
  error_prob: 0.0}}
drifts: [{{name: lighting, kind: rate, at: 1.5, metric: fmr, factor: 3.0, group: {{race: Black}}}}]
"""


def contrary_reviews(w: Workload, seed: int, share: float = 0.3) -> list[dict]:
    """Independent reviews of a share of the verified events, each saying the opposite of the verdict
    that counts, with a revision number above every primary one: none of it may ever count."""
    rng = random.Random(seed)
    out = []
    for event_id, docs in sorted(w.outcomes.items()):
        if event_id in w.events and rng.random() < share:
            out.append({**contrary(max(docs, key=lambda d: d["revision"])),
                        "reviewer": "rev-second", "revision": 9, "inclusion_prob": 1.0, "review": "independent"})
    return out


def store_workload(store, w: Workload, config, extra_outcomes: list[dict] = ()) -> None:
    """Migrate ``store`` and put the workload through the worker's batch step and sink: events and
    first verdicts in one batch, then (after those labels are stored) the corrections (revision 1)
    and ``extra_outcomes`` (independent reviews, say) in a second."""
    from fairwatch.store.migrations import migrate

    migrate(store)
    first, second = [], []
    for kind, key, value in w.messages:
        (second if kind == VERIFIED_OUTCOMES and b'"revision": 1' in value else first).append((kind, key, value))
    second += [(VERIFIED_OUTCOMES, r["event_id"].encode(), json.dumps(r).encode()) for r in extra_outcomes]
    process_in_batches(store, config, (first, second))


def process_in_batches(store, config, batches) -> Counter:
    """Each batch of (topic, key, value) messages through the worker's batch step and sink in turn,
    at consecutive offsets of one partition, the join state carried from batch to batch as the
    changelog carries it; the rejections by reason."""
    from fairwatch.store.sink import ClickHouseSink
    from fairwatch.stream.processor import BatchProcessor, RawMessage

    processor, sink, state, rejected = BatchProcessor(config), ClickHouseSink(store, config), {}, Counter()
    offset = 0
    for batch in batches:
        messages = [RawMessage(k, k, 0, offset + i, key, value) for i, (k, key, value) in enumerate(batch)]
        offset += len(batch)
        result = processor.process(messages, lambda event_id, partition: state.get(event_id))
        sink.write(result.sink)
        for event_id, (_, value) in result.state_changes.items():
            state.pop(event_id, None) if value is None else state.__setitem__(event_id, value)
        rejected.update(result.rejected)
    return rejected


def verified_score_records(w: Workload, start: datetime, end: datetime, intersections=(("sex", "race"),),
                           pick=max) -> dict[tuple, list[tuple[float, float]]]:
    """(deployment, algorithm, mode, attribute, group, truth) -> sorted (score, weight) of the verified
    events that occurred in ``[start, end)``, by loops over the raw documents: the highest revision of
    each event's primary verdicts counts (``pick=min``: the first), weight 1 / inclusion_prob."""
    out: dict[tuple, list[tuple[float, float]]] = defaultdict(list)
    for event_id, event in w.events.items():
        at = datetime.fromisoformat(event["occurred_at"].replace("Z", "+00:00"))
        if event_id not in w.outcomes or not start <= at < end:
            continue
        counted = pick(w.outcomes[event_id], key=lambda d: d["revision"])
        subject = event["subject"]
        groups = [("*", "*"), *subject.items()]
        groups += [("&".join(c), "&".join(subject[a] for a in c)) for c in intersections if all(a in subject for a in c)]
        score = event["score"]
        if counted["truth"] == "genuine" and "candidates" in event:  # the mate's own score; -inf: not listed
            mate = [c["score"] for c in event["candidates"] if c["rank"] == counted.get("mate_rank")]
            score = mate[0] if mate else float("-inf")
        for attribute, group in groups:
            key = (event["deployment"], event["algorithm"], event["mode"], attribute, group, counted["truth"])
            out[key].append((score, 1 / counted["inclusion_prob"]))
    return {key: sorted(rows) for key, rows in out.items()}


def rank_records(w: Workload, start: datetime, end: datetime, intersections=(("sex", "race"),)
                 ) -> dict[tuple, list[tuple[int, float, int]]]:
    """(deployment, algorithm, attribute, group) -> (identified rank, weight, longest list) of each
    verified mated identification search with a candidate list that occurred in ``[start, end)``,
    by loops over the raw documents: the highest revision of the primary verdicts counts; the rank is
    the counted verdict's ``mate_rank`` when the candidate of that rank scored at or above the event's
    threshold, else 0; the longest list is ``list_length`` or the candidates listed."""
    out: dict[tuple, list[tuple[int, float, int]]] = defaultdict(list)
    for event_id, event in w.events.items():
        at = datetime.fromisoformat(event["occurred_at"].replace("Z", "+00:00"))
        if event_id not in w.outcomes or not start <= at < end or event["mode"] != "identification":
            continue
        counted = max(w.outcomes[event_id], key=lambda d: d["revision"])
        if counted["truth"] != "genuine" or "candidates" not in event:
            continue
        rank = 0
        for candidate in event["candidates"]:
            if candidate["rank"] == counted.get("mate_rank") and candidate["score"] >= event["threshold"]:
                rank = candidate["rank"]
        longest = max(event.get("list_length", 0), len(event["candidates"]))
        subject = event["subject"]
        groups = [("*", "*"), *subject.items()]
        groups += [("&".join(c), "&".join(subject[a] for a in c)) for c in intersections if all(a in subject for a in c)]
        for attribute, group in groups:
            out[(event["deployment"], event["algorithm"], attribute, group)].append(
                (rank, 1 / counted["inclusion_prob"], longest))
    return dict(out)
