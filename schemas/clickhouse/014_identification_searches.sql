-- Identification issue: an identification search's candidate list, best first (rank = position,
-- 1-based), as parallel arrays: the pseudonymous candidate id, its score, and its groups as
-- sorted-key JSON ('' when the operator gave none). candidates_listed tells an empty list (the
-- search returned nothing) from no list at all; list_length 0 and gallery_size -1 mean not given.
-- One statement: 18.16 has no ADD COLUMN IF NOT EXISTS, and a half-applied file could not be rerun.
ALTER TABLE match_events
    ADD COLUMN candidates_listed UInt8 DEFAULT 0,
    ADD COLUMN candidate_ids Array(String),
    ADD COLUMN candidate_scores Array(Float64),
    ADD COLUMN candidate_groups Array(String),
    ADD COLUMN list_length UInt16 DEFAULT 0,
    ADD COLUMN gallery_size Int64 DEFAULT -1;
