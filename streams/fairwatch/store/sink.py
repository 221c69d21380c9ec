"""The ClickHouse sink: what a processed batch leaves behind, written idempotently.

Every table is a ReplacingMergeTree, so writing the same batch twice (a retry, or a replay after a
crash) leaves the same rows. Counts are never incremented in ClickHouse: ``group_counts`` rows are
absolute totals, either the live worker's resident counts (:meth:`ClickHouseSink.write_counts`) or
recomputed from ``labeled_outcomes`` (one row per event, its latest revision wins), with a version
taken before the write or the recompute's read starts, so the newest, which saw every row written
before it, is the one that stays.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterable, Sequence, Sized

import msgspec
import numpy as np

from fairwatch.contracts.canonical import candidate_groups_text
from fairwatch.contracts.envelopes import records_of_valid_batch, shapes_of_valid_batch
from fairwatch.contracts.records import MatchEvent, VerifiedOutcome
from fairwatch.core.config import CoreConfig
from fairwatch.core.counts import decode_cells
from fairwatch.core.join import LabeledDeltas
from fairwatch.core.layout import COLUMNS
from fairwatch.store.sums import exact_sum
from fairwatch.store.clickhouse import Store
from fairwatch.store.group_expansion import group_expansion_sql
from fairwatch.store.signed_input import SIGNED_INPUT_COLUMNS, signed_input_columns

# a match event's columns but a search's candidate list; envelopes' numpy frames write these alone
# (the fast path never takes a list, so the list's columns keep their defaults there)
COMPARISON_COLUMNS = (
    "event_id", "occurred_at", "occurred_at_us", "deployment", "algorithm", "mode", "score", "threshold", "decision",
    "subject_keys", "subject_values", "reference_keys", "reference_values", "context", "ingested_at", "cluster_id",
)
SEARCH_COLUMNS = ("candidates_listed", "candidate_ids", "candidate_scores", "candidate_groups", "list_length",
                  "gallery_size")  # schemas/clickhouse/014_identification_searches.sql
EVENT_COLUMNS = COMPARISON_COLUMNS + SEARCH_COLUMNS + ("use_id",)  # use_id: migration 019
OUTCOME_COLUMNS = ("event_id", "verified_at", "truth", "reviewer", "revision", "inclusion_prob", "ingested_at",
                   "mate_rank", "verifiers", "action_taken")
REVIEW_COLUMNS = ("event_id", "verified_at", "truth", "reviewer", "ingested_at")
LABELED_COLUMNS = (
    "event_id", "occurred_at", "occurred_at_us", "bucket", "deployment", "algorithm", "mode", "subject_keys",
    "subject_values", "decision", "truth", "revision", "weight", "kafka_partition",
)
DEAD_LETTER_COLUMNS = (
    "source_topic", "kafka_partition", "kafka_offset", "key_b64", "value_b64", "reason_code", "field", "reason",
    "rejected_at", "record_index",
)
GROUP_KEY_COLUMNS = ("deployment", "algorithm", "mode", "attribute", "group_label", "bucket", "kafka_partition")


_SORTED = json.JSONEncoder(sort_keys=True)
_fromisoformat = datetime.fromisoformat  # as the contracts' decoders parse timestamps
_UINT32_END = 1 << 32  # UInt32 and DateTime columns hold [0, 2**32)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)  # ingested_at of a batch with no envelopes (never stored)


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


def _epoch(t: datetime) -> int:
    return int(t.timestamp())


def event_columns(events: Sequence[MatchEvent], ingested_at: datetime) -> list[list]:
    """The EVENT_COLUMNS of match events, a column at a time (DateTime columns as epoch seconds)."""
    occurred = [e.occurred_at for e in events]
    references = [e.reference or {} for e in events]
    encode = _SORTED.encode
    return [
        [e.event_id for e in events], [_epoch(t) for t in occurred], [t.microsecond for t in occurred],
        [e.deployment for e in events], [e.algorithm for e in events], [e.mode for e in events],
        [e.score for e in events], [e.threshold for e in events], [e.decision for e in events],
        [list(e.subject) for e in events], [list(e.subject.values()) for e in events],
        [list(r) for r in references], [list(r.values()) for r in references],
        [encode(e.context) if e.context else "{}" for e in events], [_epoch(ingested_at)] * len(events),
        [e.cluster_id or "" for e in events],
        *search_columns(events),
        [e.use_id or "" for e in events],
    ]


def search_columns(events: Sequence[MatchEvent]) -> list[list]:
    """The SEARCH_COLUMNS of match events."""
    lists = [e.candidates or () for e in events]
    return [
        [int(e.candidates is not None) for e in events],
        [[c.candidate_id for c in cs] for cs in lists],
        [[c.score for c in cs] for cs in lists],
        [[candidate_groups_text(c.groups) for c in cs] for cs in lists],
        [e.list_length or 0 for e in events],
        [-1 if e.gallery_size is None else e.gallery_size for e in events],
    ]


def outcome_columns(outcomes: Sequence[VerifiedOutcome], ingested_at: datetime) -> list[list]:
    """The OUTCOME_COLUMNS of verified outcomes, a column at a time."""
    return [
        [o.event_id for o in outcomes], [_epoch(o.verified_at) for o in outcomes], [o.truth for o in outcomes],
        [o.reviewer for o in outcomes], [o.revision for o in outcomes], [o.inclusion_prob for o in outcomes],
        [_epoch(ingested_at)] * len(outcomes), [o.mate_rank or 0 for o in outcomes],
        [list(o.verifiers or ()) for o in outcomes],
        [-1 if o.action_taken is None else int(o.action_taken) for o in outcomes],
    ]


def review_row(review: VerifiedOutcome, ingested_at: datetime) -> tuple:
    """The REVIEW_COLUMNS of an independent review (``independent_reviews``)."""
    return review.event_id, _epoch(review.verified_at), review.truth, review.reviewer, _epoch(ingested_at)


def labeled_columns(deltas: LabeledDeltas, partition: int) -> list[list]:
    """The LABELED_COLUMNS of the rows entering the labeled set (sign +1); a retraction is implied
    by the higher revision. Built from the deltas' arrays a column at a time."""
    entering = (deltas.sign > 0).nonzero()[0]
    occurred_us = deltas.occurred_at_us[entering]
    profiles = deltas.profiles
    shape_of = deltas.profile[entering].tolist()
    # one (deployment, algorithm, mode, keys, labels) per distinct profile, shared by its rows
    shapes = {p: (profile.deployment, profile.algorithm, profile.mode, [a for a, _ in profile.subject],
                  [g for _, g in profile.subject])
              for p in set(shape_of) for profile in (profiles[p],)}
    by_row = [shapes[p] for p in shape_of]
    event_ids = deltas.event_id
    return [
        [event_ids[i] for i in entering.tolist()], (occurred_us // 1_000_000).tolist(),
        (occurred_us % 1_000_000).tolist(), deltas.bucket[entering].tolist(),
        *([shape[field] for shape in by_row] for field in range(5)),
        ["match" if m else "non_match" for m in deltas.match[entering].tolist()],
        ["genuine" if g else "impostor" for g in deltas.genuine[entering].tolist()],
        deltas.revision[entering].tolist(), deltas.weight[entering].tolist(), [partition] * len(entering),
    ]


def _columns_of(rows: list[tuple], width: int) -> list[list]:
    return [list(column) for column in zip(*rows)] if rows else [[] for _ in range(width)]


def _joined(parts: list[list[list]]) -> list[list]:
    """Column lists of several parts (at least one), concatenated column by column."""
    out = [list(column) for column in parts[0]]
    for part in parts[1:]:
        for column, more in zip(out, part):
            column += more
    return out


# the decision that is an error for each truth, on labelled rows (an identification search's row
# already carries the decision of its named mate: listed at or above the threshold or not)
ERROR_DECISIONS = {"impostor": "match", "genuine": "non_match"}
ERROR_SQL = "(" + " OR ".join(f"(truth = '{t}' AND decision = '{d}')" for t, d in ERROR_DECISIONS.items()) + ")"


def population_sums(truth: str) -> list[str]:
    """The six sums of one population (truth) over labelled rows, in the layout's column order."""
    population = f"truth = '{truth}'"
    error = f"{population} AND decision = '{ERROR_DECISIONS[truth]}'"
    return [
        f"toFloat64(sum({population}))",
        f"toFloat64(sum({error}))",
        exact_sum(f"if({population}, weight, 0.)"),
        exact_sum(f"if({error}, weight, 0.)"),
        exact_sum(f"if({population}, weight * weight, 0.)"),
        exact_sum(f"if({error}, weight * weight, 0.)"),
    ]


def recompute_counts_sql(intersections: Sequence[Sequence[str]]) -> str:
    """INSERT ... SELECT that rewrites the group_counts rows of some buckets of some partitions.

    One statement scans labeled_outcomes once for all the partitions of a batch (one statement per
    partition scanned it once each). It also rewrites (partition, bucket) pairs the batch did not
    touch when another partition touched that bucket: harmless, the rows are absolute.
    """
    sums = population_sums("impostor") + population_sums("genuine")
    return (
        f"INSERT INTO group_counts ({', '.join(GROUP_KEY_COLUMNS + COLUMNS)}, version) "
        f"SELECT deployment, algorithm, mode, tupleElement(pair, 1) AS attribute, tupleElement(pair, 2) AS group_label,"
        f" bucket, kafka_partition, {', '.join(sums)}, toUInt64(%(version)s) "
        f"FROM labeled_outcomes FINAL ARRAY JOIN {group_expansion_sql(intersections)} AS pair "
        f"WHERE kafka_partition IN %(partitions)s AND bucket IN %(buckets)s "
        f"GROUP BY deployment, algorithm, mode, attribute, group_label, bucket, kafka_partition"
    )


@dataclass
class SinkBatch:
    """What one processed batch must leave in ClickHouse.

    The batch processor leaves its rows unbuilt (``records``, ``envelopes``, ``deltas``): they are
    built column by column where they are inserted (:func:`row_inserts`; :meth:`built` gives them
    as rows), in the live worker's sink process, so the worker's event loop spends nothing on
    them and sends records, bytes and arrays rather than row tuples.
    """

    events: list[tuple] = field(default_factory=list)
    outcomes: list[tuple] = field(default_factory=list)
    labeled: list[tuple] = field(default_factory=list)
    dead_letters: list[tuple] = field(default_factory=list)
    touched: dict[int, set[int]] = field(default_factory=dict)  # partition -> bucket starts (epoch s)
    # (record kind, envelope bytes, records): envelopes all of whose records are stored as they are
    envelopes: list[tuple[str, bytes, int]] = field(default_factory=list)
    deltas: list[tuple[LabeledDeltas, int]] = field(default_factory=list)  # (join deltas, partition)
    records: list = field(default_factory=list)  # single MatchEvent / VerifiedOutcome records, in order
    reviews: list[tuple] = field(default_factory=list)  # independent reviews' rows (never joined)
    ingested_at: datetime | None = None  # of the rows of ``records`` and ``envelopes``
    # verified signed messages (fairwatch.store.signed_input.SIGNED_INPUT_ROW: the value as bytes,
    # base64-encoded where the row is written)
    signed: list[tuple] = field(default_factory=list)

    def touch(self, partition: int, buckets: Iterable[int]) -> None:
        self.touched.setdefault(partition, set()).update(int(b) for b in buckets)

    def __len__(self) -> int:
        return (len(self.events) + len(self.outcomes) + len(self.labeled) + len(self.dead_letters) + len(self.records)
                + len(self.reviews) + len(self.signed)
                + sum(n for _, _, n in self.envelopes) + sum(int((d.sign > 0).sum()) for d, _ in self.deltas))

    def built(self) -> SinkBatch:
        """This batch with every row built: envelopes decoded again, deltas turned into rows."""
        if not self.envelopes and not self.deltas and not self.records:
            return self
        return SinkBatch(self.event_rows(), self.outcome_rows(), self.labeled_outcome_rows(), list(self.dead_letters),
                         self.touched, reviews=list(self.reviews), signed=list(self.signed))

    def _singles(self, kind: str) -> list:
        """The batch's single records of ``kind``, in order."""
        record_type = MatchEvent if kind == "match_event" else VerifiedOutcome
        return [record for record in self.records if isinstance(record, record_type)]

    def _envelope_records(self, kind: str, decode) -> list:
        """The records of the batch's envelopes of ``kind``, decoded again by ``decode(raw, kind)``
        (:func:`records_of_valid_batch` or :func:`shapes_of_valid_batch`: the bytes the worker checked)."""
        records: list = []
        for envelope_kind, raw, count in self.envelopes:
            if envelope_kind == kind:
                decoded = decode(raw, kind)
                if len(decoded) != count:  # never: the same bytes were decoded before
                    raise RuntimeError(f"a {kind} envelope decoded differently in the sink")
                records += decoded
        return records

    def envelope_frames(self, kind: str, build) -> dict | None:
        """``build`` over the decoded records of this batch's envelopes of ``kind``, with this batch's
        ``ingested_s``; None when there are none or they do not fit the frames."""
        shapes = self._envelope_records(kind, shapes_of_valid_batch)
        frames = build(shapes) if shapes else None
        if frames is not None:
            frames["ingested_s"] = np.full(len(shapes), _epoch(self.ingested_at or _EPOCH), np.uint32)
        return frames

    def _columns(self, kind: str, records: list) -> list[list]:
        """The columns of the batch's rows of ``kind`` followed by ``records``'."""
        if kind == "match_event":
            return _joined([_columns_of(self.events, len(EVENT_COLUMNS)),
                            event_columns(records, self.ingested_at or _EPOCH)])
        return _joined([_columns_of(self.outcomes, len(OUTCOME_COLUMNS)),
                        outcome_columns(records, self.ingested_at or _EPOCH)])

    def single_columns(self, kind: str) -> list[list]:
        """The columns of this batch's rows and single records of ``kind`` (not its envelopes')."""
        return self._columns(kind, self._singles(kind))

    def record_columns(self, kind: str) -> list[list]:
        """The columns of this batch's rows, single records and envelopes' records of ``kind``."""
        return self._columns(kind, self._singles(kind) + self._envelope_records(kind, records_of_valid_batch))

    def event_columns(self) -> list[list]:
        return self.record_columns("match_event")

    def outcome_columns(self) -> list[list]:
        return self.record_columns("verified_outcome")

    def labeled_columns(self) -> list[list]:
        return _joined([_columns_of(self.labeled, len(LABELED_COLUMNS))]
                       + [labeled_columns(deltas, partition) for deltas, partition in self.deltas])

    def dead_letter_columns(self) -> list[list]:
        return _columns_of(self.dead_letters, len(DEAD_LETTER_COLUMNS))

    def event_rows(self) -> list[tuple]:
        return list(zip(*self.event_columns()))

    def outcome_rows(self) -> list[tuple]:
        return list(zip(*self.outcome_columns()))

    def labeled_outcome_rows(self) -> list[tuple]:
        return list(zip(*self.labeled_columns()))


class ClickHouseSink:
    """Writes :class:`SinkBatch` es; the worker retries a failed write (``fairwatch.stream.app``)."""

    # bucket lists longer than this are recomputed in chunks to keep the statement small
    MAX_BUCKETS_PER_STATEMENT = 500

    def __init__(self, store: Store, config: CoreConfig = CoreConfig()):
        self.store = store
        self._recompute_sql = recompute_counts_sql(config.intersections)

    def write(self, batch: SinkBatch) -> None:
        """The batch's rows, then the counts of the buckets it touched."""
        self.write_rows(batch)
        self.recompute(batch.touched)

    def write_rows(self, batches: SinkBatch | Sequence[SinkBatch]) -> None:
        """The rows of one batch or several (one insert per table for all of them)."""
        for _, write in row_inserts(batches):
            write(self.store)

    def write_counts(self, counts: dict[int, bytes], version: int | None = None) -> None:
        """Resident counts as they are: partition -> a :meth:`BucketCounts.export_cells` blob of totals,
        with ``version`` the time (ns) they were taken at (default: now). Taken later, counted more:
        of two owners of a partition across a rebalance, the newer totals win whatever lands last.

        A server gets the cells as numpy columns with a group number each, and the groups' names
        in a second external table it joins them with (:func:`counts_frames`).
        """
        version = time.time_ns() if version is None else version
        cells, groups = counts_frames(counts)
        if not len(cells["group_number"]):
            return
        if self.store.external_tables:
            self.store.insert_frames(_COUNTS_FRAMES_SQL, [("cells", _CELLS_STRUCTURE, cells),
                                                          ("groups", _GROUPS_STRUCTURE, groups)], {"version": version})
        else:  # cell by cell
            number = cells["group_number"].tolist()
            columns = [[groups[name][g] for g in number] for name in GROUP_KEY_COLUMNS[:5]]
            columns += [cells["bucket_s"].tolist(), cells["kafka_partition"].tolist()]
            columns += [cells[name].tolist() for name in COLUMNS] + [[version] * len(number)]
            self.store.insert_columns("group_counts", GROUP_KEY_COLUMNS + COLUMNS + ("version",), columns)

    def recompute(self, touched: dict[int, set[int]]) -> None:
        """Rewrite the group_counts of the (partition -> bucket starts) from labeled_outcomes.

        The live worker calls this once per flush for every batch since the last one (the
        buckets of many batches coalesce), before it persists the join state of those batches.
        """
        partitions = tuple(sorted(p for p, buckets in touched.items() if buckets))
        ordered = sorted(set().union(*touched.values())) if partitions else []
        for start in range(0, len(ordered), self.MAX_BUCKETS_PER_STATEMENT):
            chunk = tuple(_utc(b) for b in ordered[start : start + self.MAX_BUCKETS_PER_STATEMENT])
            # the version is taken before the recompute reads: a later recompute saw more
            self.store.execute(self._recompute_sql, {"version": time.time_ns(), "partitions": partitions,
                                                     "buckets": chunk})


_GROUPS_STRUCTURE = [("group_number", "UInt32")] + [(name, "String") for name in GROUP_KEY_COLUMNS[:5]]
_CELLS_STRUCTURE = [("group_number", "UInt32"), ("bucket_s", "UInt32"), ("kafka_partition", "UInt16")] + [
    (name, "Float64") for name in COLUMNS]
_COUNTS_FRAMES_SQL = (
    f"INSERT INTO group_counts ({', '.join(GROUP_KEY_COLUMNS + COLUMNS)}, version) "
    f"SELECT {', '.join(GROUP_KEY_COLUMNS[:5])}, toDateTime(bucket_s), kafka_partition, {', '.join(COLUMNS)}, "
    f"toUInt64(%(version)s) FROM cells ANY LEFT JOIN groups USING group_number"
)


def counts_frames(counts: dict[int, bytes]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Cells of counts blobs (partition -> blob) as columns: (cells: group_number, bucket_s,
    kafka_partition and the sums, as numpy arrays; groups: group_number and the five key names)."""
    cells: dict[str, list] = {name: [] for name, _ in _CELLS_STRUCTURE}
    groups: dict[str, list] = {name: [] for name, _ in _GROUPS_STRUCTURE}
    for partition, blob in counts.items():
        keys, group_of, buckets, rows = decode_cells(blob)
        if len(buckets) and (buckets.min() < 0 or buckets.max() >= _UINT32_END):
            raise ValueError(f"partition {partition} has counts of buckets outside ClickHouse's DateTime range "
                             f"(1970-2106): {int(buckets.min())}..{int(buckets.max())}")
        first = len(groups["group_number"])
        groups["group_number"] += range(first, first + len(keys))
        for position, name in enumerate(GROUP_KEY_COLUMNS[:5]):
            groups[name] += [key[position] for key in keys]
        cells["group_number"].append(group_of.astype(np.int64) + first)
        cells["bucket_s"].append(buckets)
        cells["kafka_partition"].append(np.full(len(buckets), partition))
        for j, name in enumerate(COLUMNS):
            cells[name].append(rows[:, j])
    types = {"UInt32": np.uint32, "UInt16": np.uint16, "Float64": np.float64}
    cell_frame = {name: (np.concatenate(cells[name]) if cells[name] else np.zeros(0)).astype(types[kind])
                  for name, kind in _CELLS_STRUCTURE}
    group_frame = {name: np.array(groups[name], object if kind == "String" else np.uint32)
                   for name, kind in _GROUPS_STRUCTURE}
    return cell_frame, group_frame


def split_by_partition(work: dict[int, Sized], shares: int) -> list[dict[int, Sized]]:
    """``work`` (partition -> its buckets to recompute, or its counts blob) dealt into at most
    ``shares`` non-empty parts of about equal size (``len``), whole partitions each, the largest
    first: the parts' writes together rewrite the same rows as one would."""
    parts: list[dict[int, Sized]] = [{} for _ in range(max(1, shares))]
    load = [0] * len(parts)
    for partition, items in sorted(work.items(), key=lambda item: (-len(item[1]), item[0])):
        if items:
            lightest = load.index(min(load))
            parts[lightest][partition] = items
            load[lightest] += len(items)
    return [part for part in parts if part]


def row_inserts(batches: SinkBatch | Sequence[SinkBatch]) -> list[tuple[str, Callable[[Store], None]]]:
    """The inserts of the rows of one batch or several (one insert per table for all of them: a
    server pays for each insert): (table, a function writing them to a store). They may run in any
    order or at once; only a recompute of their buckets must come after all of them."""
    batches = [batches] if isinstance(batches, SinkBatch) else list(batches)
    return [
        ("match_events", lambda store: _write_records(batches, store, "match_event")),
        ("verified_outcomes", lambda store: _write_records(batches, store, "verified_outcome")),
        ("labeled_outcomes", lambda store: _write_labeled(batches, store)),
        ("dead_letters", lambda store: store.insert_columns(
            "dead_letters", DEAD_LETTER_COLUMNS, _joined([b.dead_letter_columns() for b in batches]))),
        ("independent_reviews", lambda store: store.insert_columns(
            "independent_reviews", REVIEW_COLUMNS, _joined([_columns_of(b.reviews, len(REVIEW_COLUMNS))
                                                             for b in batches]))),
        ("signed_input", lambda store: store.insert_columns(
            "signed_input", SIGNED_INPUT_COLUMNS, signed_input_columns([row for b in batches for row in b.signed]))),
    ]


def _write_records(batches: list[SinkBatch], store: Store, kind: str) -> None:
    """The events (or outcomes) of ``batches``: those of envelopes as numpy columns where the store
    takes external tables (:func:`event_frames`, :func:`outcome_frames`), the rest as column lists."""
    if kind == "match_event":
        table, columns, build, sql, structure = ("match_events", EVENT_COLUMNS, event_frames, _EVENT_FRAMES_SQL,
                                                 _EVENT_STRUCTURE)
    else:
        table, columns, build, sql, structure = ("verified_outcomes", OUTCOME_COLUMNS, outcome_frames,
                                                 _OUTCOME_FRAMES_SQL, _OUTCOME_STRUCTURE)
    frames, lists = [], []
    for batch in batches:
        built = batch.envelope_frames(kind, build) if store.external_tables else None
        if built is None:
            lists.append(batch.record_columns(kind))
        else:
            frames.append(built)
            lists.append(batch.single_columns(kind))
    store.insert_columns(table, columns, _joined(lists))
    if frames:
        store.insert_frames(sql, [("records", structure, {name: np.concatenate([f[name] for f in frames])
                                                          for name, _ in structure})])


def _write_labeled(batches: list[SinkBatch], store: Store) -> None:
    """The labeled rows of ``batches``: the join's deltas as numpy columns where the store takes
    external tables (:func:`labeled_frames`), else (and the rows of ``labeled``) as column lists."""
    deltas = [part for batch in batches for part in batch.deltas]
    frames = labeled_frames(deltas) if store.external_tables and deltas else None
    if frames is None:
        store.insert_columns("labeled_outcomes", LABELED_COLUMNS, _joined([b.labeled_columns() for b in batches]))
        return
    rows = [row for batch in batches for row in batch.labeled]
    store.insert_columns("labeled_outcomes", LABELED_COLUMNS, _columns_of(rows, len(LABELED_COLUMNS)))
    labeled, profiles = frames
    if labeled:
        store.insert_frames(_LABELED_FRAMES_SQL, [("labeled", _LABELED_STRUCTURE, labeled),
                                                  ("profiles", _PROFILES_STRUCTURE, profiles)])


# ---- rows as numpy columns of external tables, expanded by the server -----------------------------

LABEL_JOINER = "&"  # never in a label (the contract keeps it for intersections) nor in an attribute name


def _split_sql(column: str) -> str:
    """The array a LABEL_JOINER-joined string column was made of."""
    return f"if({column} = '', emptyArrayString(), splitByChar('{LABEL_JOINER}', {column}))"


_PROFILES_STRUCTURE = [("profile", "UInt32"), ("deployment", "String"), ("algorithm", "String"), ("mode", "String"),
                       ("keys", "String"), ("labels", "String")]
_LABELED_STRUCTURE = [("event_id", "String"), ("occurred_s", "UInt32"), ("occurred_at_us", "UInt32"),
                      ("bucket_s", "UInt32"), ("profile", "UInt32"), ("decision", "String"), ("truth", "String"),
                      ("revision", "UInt32"), ("weight", "Float64"), ("kafka_partition", "UInt16")]
_LABELED_FRAMES_SQL = (
    f"INSERT INTO labeled_outcomes ({', '.join(LABELED_COLUMNS)}) "
    f"SELECT event_id, toDateTime(occurred_s), occurred_at_us, toDateTime(bucket_s), deployment, algorithm, mode, "
    f"{_split_sql('keys')}, {_split_sql('labels')}, decision, truth, revision, weight, kafka_partition "
    f"FROM labeled ANY LEFT JOIN profiles USING profile"
)
_DECISIONS = np.array(["non_match", "match"], object)
_TRUTHS = np.array(["impostor", "genuine"], object)


def labeled_frames(parts: list[tuple[LabeledDeltas, int]]) -> tuple[dict, dict] | None:
    """The rows entering the labeled set (as :func:`labeled_columns`) of several (deltas, partition),
    as numpy columns of two external tables: the rows, with a profile number each, and the profiles
    (labels joined by LABEL_JOINER). None when a value does not fit them (a time outside DateTime,
    a label with the joiner): such rows take the column-list path."""
    rows: dict[str, list[np.ndarray]] = {name: [] for name, _ in _LABELED_STRUCTURE}
    profiles: dict[str, list] = {name: [] for name, _ in _PROFILES_STRUCTURE}
    for deltas, partition in parts:
        entering = (deltas.sign > 0).nonzero()[0]
        if not len(entering):
            continue
        used, local = np.unique(deltas.profile[entering], return_inverse=True)
        first = len(profiles["profile"])
        for number, p in enumerate(used.tolist(), start=first):
            profile = deltas.profiles[p]
            keys, labels = [a for a, _ in profile.subject], [g for _, g in profile.subject]
            if any(LABEL_JOINER in text for text in labels):
                return None
            profiles["profile"].append(number)
            profiles["deployment"].append(profile.deployment)
            profiles["algorithm"].append(profile.algorithm)
            profiles["mode"].append(profile.mode)
            profiles["keys"].append(LABEL_JOINER.join(keys))
            profiles["labels"].append(LABEL_JOINER.join(labels))
        occurred_us = deltas.occurred_at_us[entering]
        seconds, bucket = occurred_us // 1_000_000, deltas.bucket[entering]
        if min(seconds.min(), bucket.min()) < 0 or max(seconds.max(), bucket.max()) >= _UINT32_END:
            return None
        event_ids = deltas.event_id
        rows["event_id"].append(np.array([event_ids[i] for i in entering.tolist()], object))
        rows["occurred_s"].append(seconds)
        rows["occurred_at_us"].append(occurred_us % 1_000_000)
        rows["bucket_s"].append(bucket)
        rows["profile"].append(local + first)
        rows["decision"].append(_DECISIONS[deltas.match[entering].view(np.uint8)])
        rows["truth"].append(_TRUTHS[deltas.genuine[entering].view(np.uint8)])
        rows["revision"].append(deltas.revision[entering])
        rows["weight"].append(deltas.weight[entering])
        rows["kafka_partition"].append(np.full(len(entering), partition))
    if not profiles["profile"]:
        return {}, {}
    types = {"String": object, "UInt32": np.uint32, "UInt16": np.uint16, "Float64": np.float64}
    row_frame = {name: np.concatenate(rows[name]).astype(types[kind]) for name, kind in _LABELED_STRUCTURE}
    profile_frame = {name: np.array(profiles[name], types[kind]) for name, kind in _PROFILES_STRUCTURE}
    return row_frame, profile_frame


_EVENT_STRUCTURE = [("event_id", "String"), ("occurred_s", "UInt32"), ("occurred_at_us", "UInt32"),
                    ("deployment", "String"), ("algorithm", "String"), ("mode", "String"), ("score", "Float64"),
                    ("threshold", "Float64"), ("decision", "String"), ("subject_keys", "String"),
                    ("subject_values", "String"), ("reference_keys", "String"), ("reference_values", "String"),
                    ("context", "String"), ("ingested_s", "UInt32"), ("cluster_id", "String")]
_EVENT_FRAMES_SQL = (
    f"INSERT INTO match_events ({', '.join(COMPARISON_COLUMNS)}) "
    f"SELECT event_id, toDateTime(occurred_s), occurred_at_us, deployment, algorithm, mode, score, threshold, "
    f"decision, {_split_sql('subject_keys')}, {_split_sql('subject_values')}, {_split_sql('reference_keys')}, "
    f"{_split_sql('reference_values')}, context, toDateTime(ingested_s), cluster_id FROM records"
)
_OUTCOME_STRUCTURE = [("event_id", "String"), ("verified_s", "UInt32"), ("truth", "String"), ("reviewer", "String"),
                      ("revision", "UInt32"), ("inclusion_prob", "Float64"), ("ingested_s", "UInt32"),
                      ("mate_rank", "UInt16")]
_OUTCOME_FRAMES_SQL = (
    f"INSERT INTO verified_outcomes ({', '.join(OUTCOME_COLUMNS)}) "
    f"SELECT event_id, toDateTime(verified_s), truth, reviewer, revision, inclusion_prob, toDateTime(ingested_s), "
    f"mate_rank, emptyArrayString(), toInt8(-1) FROM records"  # envelopes' fast path has neither field
)


def _in_datetime_range(seconds: list[int]) -> bool:
    return not seconds or (min(seconds) >= 0 and max(seconds) < _UINT32_END)


def event_frames(shapes: list) -> dict[str, np.ndarray] | None:
    """The columns of :func:`event_columns` (but ``ingested_at``) of decoded envelope records, as
    numpy columns of an external table: times as seconds, labels joined by LABEL_JOINER. None when
    they do not fit (a time outside DateTime, a label with the joiner)."""
    unset, encode, join = msgspec.UNSET, _SORTED.encode, LABEL_JOINER.join
    times = [_fromisoformat(r.occurred_at) for r in shapes]
    seconds = [_epoch(t) for t in times]
    subjects = [r.subject for r in shapes]
    references = [{} if r.reference is unset else r.reference for r in shapes]
    subject_values = [join(s.values()) for s in subjects]
    reference_values = [join(r.values()) for r in references]
    joiners = "".join(subject_values).count(LABEL_JOINER) + "".join(reference_values).count(LABEL_JOINER)
    if not _in_datetime_range(seconds) or joiners != sum(len(m) - 1 for m in subjects + references if m):
        return None  # a label holds the joiner
    return {
        "event_id": np.array([r.event_id for r in shapes], object),
        "occurred_s": np.array(seconds, np.uint32), "occurred_at_us": np.array([t.microsecond for t in times], np.uint32),
        "deployment": np.array([r.deployment for r in shapes], object),
        "algorithm": np.array([r.algorithm for r in shapes], object), "mode": np.array([r.mode for r in shapes], object),
        "score": np.array([r.score for r in shapes], np.float64),
        "threshold": np.array([r.threshold for r in shapes], np.float64),
        "decision": np.array([r.decision for r in shapes], object),
        "subject_keys": np.array([join(s) for s in subjects], object), "subject_values": np.array(subject_values, object),
        "reference_keys": np.array([join(r) for r in references], object),
        "reference_values": np.array(reference_values, object),
        "context": np.array([encode(r.context) if r.context is not unset and r.context else "{}" for r in shapes],
                            object),
        "cluster_id": np.array(["" if r.cluster_id is unset else r.cluster_id for r in shapes], object),
    }


def outcome_frames(shapes: list) -> dict[str, np.ndarray] | None:
    """The columns of :func:`outcome_columns` (but ``ingested_at``) of decoded envelope records, as
    numpy columns of an external table; None when a time is outside DateTime."""
    seconds = [_epoch(_fromisoformat(r.verified_at)) for r in shapes]
    if not _in_datetime_range(seconds):
        return None
    return {
        "event_id": np.array([r.event_id for r in shapes], object), "verified_s": np.array(seconds, np.uint32),
        "truth": np.array([r.truth for r in shapes], object), "reviewer": np.array([r.reviewer for r in shapes], object),
        "revision": np.array([r.revision for r in shapes], np.uint32),
        "inclusion_prob": np.array([r.inclusion_prob for r in shapes], np.float64),
        "mate_rank": np.array([0 if r.mate_rank is msgspec.UNSET else r.mate_rank for r in shapes], np.uint16),
    }
