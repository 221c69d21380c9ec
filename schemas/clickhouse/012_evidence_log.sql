-- The evidence log (evidence issue): every accepted evidence row is a leaf of an append-only
-- Merkle tree per origin (a deployment, or the dead letters), RFC 9162 hashing, stored the way
-- golang.org/x/mod/sumdb/tlog stores a log so that appending and proving read O(log n) hashes.
-- Hashes are lowercase hex. A checkpoint's note is a C2SP signed note; the same notes are written
-- outside the store too. Rows are only ever appended; `fairwatch audit verify` reads them without
-- FINAL so that a second row at one index (a fork or an edit) shows.
CREATE TABLE IF NOT EXISTS evidence_leaves
(
    origin      String,
    leaf_index  UInt64,
    kind        String,
    row_key     String,
    leaf_hash   String,
    sealed_at   DateTime('UTC')
)
ENGINE = ReplacingMergeTree()
ORDER BY (origin, leaf_index);

CREATE TABLE IF NOT EXISTS evidence_hashes
(
    origin        String,
    storage_index UInt64,
    hash          String
)
ENGINE = ReplacingMergeTree()
ORDER BY (origin, storage_index);

CREATE TABLE IF NOT EXISTS evidence_checkpoints
(
    origin      String,
    tree_size   UInt64,
    root_hash   String,
    note        String,
    signed_at   DateTime('UTC')
)
ENGINE = ReplacingMergeTree()
ORDER BY (origin, tree_size);
