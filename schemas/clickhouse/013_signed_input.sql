-- Signed input (evidence issue, point 1): every input message whose signature the worker verified
-- against its keyring, with what checks it again offline: the message's exact bytes (base64), the
-- key id, the deployment and time it was signed for and the signature (fairwatch.contracts.signing).
-- fairwatch.store.signed_input re-verifies these rows against a keyring and compares the records
-- they carry with the stored match_events, verified_outcomes and independent_reviews.
-- kafka_timestamp: the Kafka record's timestamp in ms (-1 when the message came from a file).
-- ReplacingMergeTree: a message read again (a retry, a replay after a crash) replaces its row; the
-- same message always has the same signed_at, hence the same partition. No TTL: provenance is kept
-- as long as the evidence it backs.
CREATE TABLE IF NOT EXISTS signed_input
(
    deployment       String,
    source_topic     String,
    kafka_partition  Int32,
    kafka_offset     Int64,
    kind             Enum8('match_event' = 1, 'verified_outcome' = 2),
    key_id           String,
    signed_at        DateTime('UTC'),
    kafka_timestamp  Int64,
    signature_b64    String,
    value_b64        String,
    records          UInt32,
    ingested_at      DateTime('UTC')
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toYYYYMM(signed_at)
ORDER BY (deployment, source_topic, kafka_partition, kafka_offset);
