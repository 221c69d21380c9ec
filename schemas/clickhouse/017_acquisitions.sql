-- Regulation issue: acquisition attempts (schemas/acquisition_event.schema.json, topic
-- fairwatch.acquisitions): found and good enough, no face, or below the quality bar. Failure to
-- acquire per group is read from here (fairwatch audit acquisition). An attempt sent twice is one
-- row after merges (read with FINAL); subject keys sorted, [] when the operator recorded no labels;
-- cluster_id, use_id and context '' when not given.
CREATE TABLE IF NOT EXISTS acquisitions
(
    attempt_id      String,
    occurred_at     DateTime('UTC'),
    deployment      String,
    algorithm       String,
    outcome         Enum8('acquired' = 1, 'no_face' = 2, 'low_quality' = 3),
    subject_keys    Array(String),
    subject_values  Array(String),
    cluster_id      String,
    use_id          String,
    context         String,
    ingested_at     DateTime('UTC')
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (deployment, algorithm, attempt_id);
