-- Per-group estimates as the worker saw them at snapshot_at over trailing windows, for Grafana and
-- for auditors (what the stream said, when). Recomputable from group_counts with the core's math.
CREATE TABLE IF NOT EXISTS estimate_snapshots
(
    snapshot_at     DateTime('UTC'),
    window_seconds  UInt32,
    deployment      String,
    algorithm       String,
    mode            Enum8('verification' = 1, 'identification' = 2),
    attribute       String,
    group_label     String,
    impostor        Float64,
    false_match     Float64,
    genuine         Float64,
    false_non_match Float64,
    fmr             Nullable(Float64),
    fmr_low         Nullable(Float64),
    fmr_high        Nullable(Float64),
    fnmr            Nullable(Float64),
    fnmr_low        Nullable(Float64),
    fnmr_high       Nullable(Float64),
    status          String
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(snapshot_at)
ORDER BY (deployment, algorithm, window_seconds, snapshot_at, mode, attribute, group_label);
