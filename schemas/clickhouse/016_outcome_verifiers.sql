-- Regulation issue: who verified a verdict (pseudonymous ids, in the order given; [] when the site
-- does not say) and whether action was taken on it (-1 not recorded, 0 no, 1 yes): the two-person
-- rule for acted-on identifications (EU AI Act Art. 14(5)) is read from these.
-- One statement: 18.16 has no ADD COLUMN IF NOT EXISTS, and a half-applied file could not be rerun.
ALTER TABLE verified_outcomes
    ADD COLUMN verifiers Array(String),
    ADD COLUMN action_taken Int8 DEFAULT -1;
