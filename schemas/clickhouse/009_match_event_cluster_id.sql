-- Detection issue: an optional pseudonymous key of the subject or session an event belongs to (a
-- keyed hash, never the id itself; '' when the site sends none). Errors that share a key come
-- together (the same traveller retried), so detection bounds their dispersion per key. One
-- statement: 18.16 has no ADD COLUMN IF NOT EXISTS.
ALTER TABLE match_events ADD COLUMN cluster_id String DEFAULT '';
