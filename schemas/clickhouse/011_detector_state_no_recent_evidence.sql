-- Boards review, item 2: a tested stream without one comparison in the trailing resolve_after is
-- not quiet: fairwatch.detect.states writes it as 'no_recent_evidence', and the Overview lists it
-- and counts it apart from the tested ones. Adding a value to an Enum8 changes only metadata
-- (18.16 and current servers); the values already stored keep their codes.
ALTER TABLE detector_state MODIFY COLUMN state Enum8('quiet' = 1, 'near' = 2, 'alarm' = 3, 'insufficient' = 4,
                                                     'no_recent_evidence' = 5);
