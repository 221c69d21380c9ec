-- Tables the Grafana boards read besides the core's own (dashboards/, fairwatch.audit.boards).
-- Same rules as 001: ReplacingMergeTree, no DateTime64/Map/Bool/LowCardinality/TTL, so that
-- ClickHouse 18.16 and current ClickHouse accept it.

-- The differentials of every attribute set as the worker saw them at snapshot_at over a trailing
-- window, with their bootstrap intervals and status (fairwatch.core.differentials): the Disparity board
-- plots them over time; written beside estimate_snapshots by write_differential_snapshots().
CREATE TABLE IF NOT EXISTS differential_snapshots
(
    snapshot_at     DateTime('UTC'),
    window_seconds  UInt32,
    deployment      String,
    algorithm       String,
    mode            Enum8('verification' = 1, 'identification' = 2),
    attribute       String,
    metric          String,
    rate            String,
    value           Nullable(Float64),
    low             Nullable(Float64),
    high            Nullable(Float64),
    status          String,
    groups          UInt32,
    max_group       Nullable(String),
    min_group       Nullable(String)
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(snapshot_at)
ORDER BY (deployment, algorithm, window_seconds, snapshot_at, mode, attribute, metric, rate);

-- Worker health samples (the worker's Prometheus metrics, written by write_health() from its
-- timer) so that the Pipeline board needs only ClickHouse. Counters and histogram sums are
-- cumulative per worker process, as Prometheus exposes them; panels take differences.
CREATE TABLE IF NOT EXISTS worker_health
(
    at              DateTime('UTC'),
    worker          String,
    metric          String,
    label_keys      Array(String),
    label_values    Array(String),
    value           Float64
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(at)
ORDER BY (metric, worker, label_keys, label_values, at);
