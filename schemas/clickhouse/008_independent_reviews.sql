-- Independent reviews (estimates issue): a blind second verdict on a random sample of verified
-- events, by another reviewer. Never counted; the share of them that disagree with the verdict
-- that counts measures the reviewers' error (fairwatch.core.misclassification). One row per
-- event, reviewer and verdict time: a redelivered review replaces itself.
CREATE TABLE IF NOT EXISTS independent_reviews
(
    event_id     String,
    verified_at  DateTime('UTC'),
    truth        Enum8('genuine' = 1, 'impostor' = 2),
    reviewer     String,
    ingested_at  DateTime('UTC')
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(verified_at)
ORDER BY (event_id, reviewer, verified_at);
