-- Identification issue: a mated search's mate, by its rank in the event's candidate list; 0 when
-- the mate was not listed, the search was not mated, or the event is a 1:1 comparison.
ALTER TABLE verified_outcomes ADD COLUMN mate_rank UInt16 DEFAULT 0;
