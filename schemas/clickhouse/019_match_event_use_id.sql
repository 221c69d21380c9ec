-- Regulation issue: the use (session) a match event belongs to, when the site names it
-- (schemas/match_event.schema.json use_id; '' when not given: the use of its deployment running at
-- occurred_at). Appended to the event's canonical bytes only when given, so sealed rows keep theirs.
ALTER TABLE match_events ADD COLUMN use_id String DEFAULT '';
