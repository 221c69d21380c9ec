-- fairwatch tables. Accepted unchanged by ClickHouse 18.16 and by current ClickHouse (chDB 26.x):
-- no DateTime64, Map, Bool, LowCardinality, TTL or window functions here (see ARCHITECTURE.md).
-- Every table is a ReplacingMergeTree so that a retried insert (at-least-once delivery) replaces
-- rather than adds; readers use FINAL or argMax where exact counts matter.
-- Identifiers are pseudonymous: no faces, templates or names are stored.

CREATE TABLE IF NOT EXISTS match_events
(
    event_id        String,
    occurred_at     DateTime('UTC'),
    occurred_at_us  UInt32,
    deployment      String,
    algorithm       String,
    mode            Enum8('verification' = 1, 'identification' = 2),
    score           Float64,
    threshold       Float64,
    decision        Enum8('match' = 1, 'non_match' = 2),
    subject_keys    Array(String),
    subject_values  Array(String),
    reference_keys  Array(String),
    reference_values Array(String),
    context         String,
    ingested_at     DateTime('UTC')
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (deployment, algorithm, event_id);

CREATE TABLE IF NOT EXISTS verified_outcomes
(
    event_id        String,
    verified_at     DateTime('UTC'),
    truth           Enum8('genuine' = 1, 'impostor' = 2),
    reviewer        String,
    revision        UInt32,
    inclusion_prob  Float64,
    ingested_at     DateTime('UTC')
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(verified_at)
ORDER BY (event_id, revision);

-- One row per joined (event, outcome); a higher revision replaces the lower (version = revision).
-- This is the source of truth for counts: group_counts is recomputed from it.
CREATE TABLE IF NOT EXISTS labeled_outcomes
(
    event_id        String,
    occurred_at     DateTime('UTC'),
    occurred_at_us  UInt32,
    bucket          DateTime('UTC'),
    deployment      String,
    algorithm       String,
    mode            Enum8('verification' = 1, 'identification' = 2),
    subject_keys    Array(String),
    subject_values  Array(String),
    decision        Enum8('match' = 1, 'non_match' = 2),
    truth           Enum8('genuine' = 1, 'impostor' = 2),
    revision        UInt32,
    weight          Float64,
    kafka_partition UInt16
)
ENGINE = ReplacingMergeTree(revision)
PARTITION BY toYYYYMM(bucket)
ORDER BY (deployment, algorithm, bucket, event_id);

-- Per-group event-time bucket counts, in the layout of fairwatch.core.layout. Each Kafka
-- partition's rows are owned by one worker at a time and recomputed from labeled_outcomes as
-- absolute values with a growing version, so a rewrite after a crash or a late outcome replaces
-- the row. Totals are sum() over partitions of the FINAL rows.
CREATE TABLE IF NOT EXISTS group_counts
(
    deployment      String,
    algorithm       String,
    mode            Enum8('verification' = 1, 'identification' = 2),
    attribute       String,
    group_label     String,
    bucket          DateTime('UTC'),
    kafka_partition UInt16,
    impostor_n      Float64,
    impostor_errors Float64,
    impostor_w      Float64,
    impostor_w_err  Float64,
    impostor_w2     Float64,
    impostor_w2_err Float64,
    genuine_n       Float64,
    genuine_errors  Float64,
    genuine_w       Float64,
    genuine_w_err   Float64,
    genuine_w2      Float64,
    genuine_w2_err  Float64,
    version         UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(bucket)
ORDER BY (deployment, algorithm, mode, attribute, group_label, bucket, kafka_partition);

CREATE TABLE IF NOT EXISTS alerts
(
    id              String,
    type            Enum8('error_rate_drift' = 1, 'disparity_breach' = 2, 'score_drift' = 3,
                          'insufficient_evidence' = 4, 'label_backlog' = 5),
    severity        Enum8('info' = 1, 'warning' = 2, 'critical' = 3),
    deployment      String,
    algorithm       String,
    group_label     String,
    metric          String,
    value_estimate  Nullable(Float64),
    value_low       Nullable(Float64),
    value_high      Nullable(Float64),
    baseline        Nullable(Float64),
    detector        String,
    evidence_n      Float64,
    evidence_e_value Nullable(Float64),
    evidence_statistic Nullable(Float64),
    state           Enum8('firing' = 1, 'resolved' = 2),
    opened_at       DateTime('UTC'),
    resolved_at     Nullable(DateTime('UTC')),
    runbook_url     String,
    dashboard_url   String,
    version         UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(opened_at)
ORDER BY (id, opened_at);

CREATE TABLE IF NOT EXISTS dead_letters
(
    source_topic    String,
    kafka_partition Int32,      -- -1 when not from Kafka (file replay)
    kafka_offset    Int64,      -- Kafka offset, or the line number of a replayed file
    key_b64         Nullable(String),
    value_b64       String,
    reason_code     String,
    field           Nullable(String),
    reason          String,
    rejected_at     DateTime('UTC')
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(rejected_at)
ORDER BY (source_topic, kafka_partition, kafka_offset);
