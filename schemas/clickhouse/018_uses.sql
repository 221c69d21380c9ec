-- Regulation issue: use records (schemas/use_record.schema.json, topic fairwatch.uses): when each use
-- (session) of a system started and ended, the reference database it searched and the operator's
-- role (EU AI Act Art. 12(3)). ended_at is 1970-01-01 00:00:00 while the use runs; as the version of
-- the table, the record with ended_at replaces the one sent at the start (read with FINAL).
-- reference_version and operator_role '' when not given.
CREATE TABLE IF NOT EXISTS uses
(
    use_id              String,
    deployment          String,
    started_at          DateTime('UTC'),
    ended_at            DateTime('UTC'),
    reference_database  String,
    reference_version   String,
    operator_role       String,
    ingested_at         DateTime('UTC')
)
ENGINE = ReplacingMergeTree(ended_at)
PARTITION BY toYYYYMM(started_at)
ORDER BY (deployment, use_id);
