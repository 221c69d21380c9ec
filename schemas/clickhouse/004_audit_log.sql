-- The tamper-evident audit log: every estimate snapshot and alert is also appended here as a
-- record of a hash chain (fairwatch.store.auditlog). A record's hash covers its chain, sequence number,
-- kind, time, canonical JSON content and the previous record's hash; `mac` is an HMAC-SHA256 of
-- the hash with an operator-held key (empty when no key is configured).
-- Plain MergeTree, not Replacing: a row inserted twice must stay visible to `fairwatch audit
-- verify` instead of being merged away. One writer per chain at a time (see auditlog.py).
CREATE TABLE IF NOT EXISTS audit_log
(
    chain           String,
    seq             UInt64,
    kind            String,
    recorded_at     DateTime('UTC'),
    content         String,
    prev_hash       String,
    hash            String,
    mac             String
)
ENGINE = MergeTree()
PARTITION BY toYYYYMM(recorded_at)
ORDER BY (chain, seq);
