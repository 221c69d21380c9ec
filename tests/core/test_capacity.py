"""The capacity model against plans worked out by hand from the formulas in docs/scaling.md."""

from __future__ import annotations

import math

import pytest
from fairwatch.core.capacity import COEFFICIENTS, GiB, TiB, PlanError, PlanInputs, capacity_plan

# the coefficient values the hand computations below use; a new benchmark run changes them here too
USED = {"worker_records_per_second": 47_000, "join_bytes_per_id": 202.0, "outcomes_per_verified_event": 1.0019,
        "match_event_bytes": 53.6, "verified_outcome_bytes": 32.7, "labeled_outcome_bytes": 39.1,
        "group_count_bytes": 10.2, "evidence_bytes_per_leaf": 228.8, "kafka_event_bytes": 321.8,
        "kafka_outcome_bytes": 168.7, "join_log_bytes_per_id": 82.1, "clickhouse_cpu_us_per_record": 3.9}


def test_the_hand_computations_use_the_models_coefficients_and_each_names_its_source():
    assert {name: COEFFICIENTS[name].value for name in USED} == USED
    for name, coefficient in COEFFICIENTS.items():
        assert coefficient.source.split(" ")[0].startswith("bench_") and "2026-" in coefficient.source, name


def test_a_small_load_is_sized_by_the_join_state_it_holds_for_the_ttl():
    plan = capacity_plan(PlanInputs(events_per_second=100, sites=2, groups=9, retention_days=10, verified_share=0.5,
                                    label_delay_hours=2, ttl_days=1, attribute_sets=3, worker_memory_gib=1,
                                    node_disk_tib=1))
    # 100 events/s + 100 x 0.5 x 1.0019 = 50.095 outcomes/s
    assert plan.records_per_second.value == pytest.approx(150.095)
    assert plan.workers_for_cpu.value == 1  # 150.095 / 23,500
    # held: 1 day TTL (86,400 s) + 0.5 x 2 h (3,600 s) + the hour between expiry passes = 93,600 s
    assert plan.ids_held.value == pytest.approx(9_360_000)
    assert plan.join_state.value * GiB == pytest.approx(1_890_720_000)  # x 202 B = 1.76 GiB
    assert plan.workers_for_memory.value == 2 and plan.workers.value == 2
    assert plan.partitions.value == 8  # the floor: 2 x 2 < 8
    assert plan.join_state_per_worker.value * GiB == pytest.approx(945_360_000)
    assert plan.join_log_per_worker.value * GiB == pytest.approx(9_360_000 * 82.1 * 2 / 2)
    # Kafka: 100 x 321.8 + 50.095 x 168.7 = 40,631.0265 B/s, kept 168 h, 3 replicas
    assert plan.kafka_ingress.value * 2**20 == pytest.approx(40_631.0265)
    inputs = 40_631.0265 * 604_800 * 3  # 73,721,934,... B
    log = 9_360_000 * 82.1 * 2 * 3  # 4,610,736,000 B
    assert plan.kafka_disk.value * TiB == pytest.approx(inputs + log)
    assert plan.kafka_brokers.value == 3  # 0.07 TiB: replication sets the count
    # counts: 2 sites x 10 rows x 8 partitions x 1,440 minutes = 230,400 cells, fewer than the labeled
    # outcomes' 4,320,000 x 4 groups
    assert plan.group_count_rows_per_day.value == 230_400
    day = (8_640_000 * 53.6 + 50.095 * 86_400 * 32.7 + 4_320_000 * 39.1 + 230_400 * 10.2
           + 150.095 * 86_400 * 228.8)
    assert plan.clickhouse_disk_per_day.value * GiB == pytest.approx(day)
    assert plan.clickhouse_disk_retention.value * TiB == pytest.approx(day * 10 * 2)
    assert plan.clickhouse_shards.value == math.ceil(day * 10 / TiB) == 1
    assert plan.clickhouse_nodes.value == 2
    assert plan.clickhouse_insert_cpu.value == pytest.approx(150.095 * 3.9e-6)


def test_a_large_load_with_a_short_ttl_is_sized_by_cpu_and_its_counts_by_their_cells():
    plan = capacity_plan(PlanInputs(events_per_second=200_000, sites=100, groups=200, retention_days=30,
                                    verified_share=0.5, label_delay_hours=1, ttl_days=0.01, worker_memory_gib=1000,
                                    node_disk_tib=8))
    # 200,000 + 100,190 outcomes = 300,190 records/s; / (0.5 x 47,000) = 12.77 -> 13 workers
    assert plan.records_per_second.value == pytest.approx(300_190)
    assert plan.workers_for_cpu.value == 13
    # held 864 s + 1,800 s + 3,600 s = 6,264 s: 1,252,800,000 ids x 202 B = 235.7 GiB, one worker's worth
    assert plan.ids_held.value == pytest.approx(1_252_800_000)
    assert plan.workers_for_memory.value == 1
    assert plan.workers.value == 13 and plan.partitions.value == 26
    # cells: 100 x 201 x 26 x 1,440 = 752,544,000; labeled x 4 = 100,000 x 86,400 x 4 = 34,560,000,000
    assert plan.group_count_rows_per_day.value == 752_544_000
    kafka = ((200_000 * 321.8 + 100_190 * 168.7) * 604_800 * 3 + 1_252_800_000 * 82.1 * 2 * 3)
    assert plan.kafka_disk.value * TiB == pytest.approx(kafka)
    assert plan.kafka_brokers.value == 17  # 1.4806e14 B / 8 TiB = 16.8
    day = (200_000 * 86_400 * 53.6 + 100_190 * 86_400 * 32.7 + 100_000 * 86_400 * 39.1 + 752_544_000 * 10.2
           + 300_190 * 86_400 * 228.8)
    assert plan.clickhouse_disk_per_day.value * GiB == pytest.approx(day)  # 7.4890e12 B, 80% of it evidence
    assert plan.clickhouse_shards.value == 26  # 30 days: 2.2467e14 B / 8 TiB = 25.5
    assert plan.clickhouse_nodes.value == 52


def test_sparse_counts_are_bounded_by_the_labeled_outcomes_and_their_groups():
    plan = capacity_plan(PlanInputs(events_per_second=1, sites=50, groups=400, retention_days=1, verified_share=0.1,
                                    attribute_sets=5))
    # 1 x 0.1 x 86,400 = 8,640 labeled a day, each in 6 rows; the cells are 50 x 401 x 8 x 1,440
    assert plan.group_count_rows_per_day.value == pytest.approx(51_840)


@pytest.mark.parametrize("field, value, message", [
    ("events_per_second", 0, "--events-per-second must be a positive number, got 0"),
    ("events_per_second", float("inf"), "--events-per-second must be a positive number, got inf"),
    ("sites", -3, "--sites must be a positive number, got -3"),
    ("groups", 0, "--groups must be a positive number, got 0"),
    ("retention_days", 0, "--retention-days must be a positive number, got 0"),
    ("verified_share", 0, "--verified-share must be a positive number, got 0"),
    ("verified_share", 1.2, "--verified-share is a share of the events: at most 1, got 1.2"),
    ("label_delay_hours", -1, "--label-delay-hours must be a positive number, got -1"),
    ("ttl_days", float("nan"), "--ttl-days must be a positive number, got nan"),
    ("attribute_sets", 11, "--attribute-sets (11) cannot exceed --groups (10): each attribute set has at least one group"),
    ("worker_memory_gib", 0, "--worker-memory-gib must be a positive number, got 0"),
    ("node_disk_tib", -0.5, "--node-disk-tib must be a positive number, got -0.5"),
])
def test_an_input_the_model_cannot_plan_for_is_refused_by_its_option_name(field, value, message):
    given = {"events_per_second": 10, "sites": 1, "groups": 10, "retention_days": 1, field: value}
    with pytest.raises(PlanError) as refused:
        PlanInputs(**given)
    assert str(refused.value) == message and refused.value.option == field
