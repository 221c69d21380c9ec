-- Boards issue (#27 item 5): the detection cycle's latest state of every stream it ran
-- (fairwatch.detect.states), so that the Overview lists what is drifting or close to its alarm
-- threshold now, and what is not tested for lack of evidence, without rerunning the detectors.
-- One row per deployment and condition id, replaced at every cycle (version: the cycle's; no
-- time partition, so that a merge keeps only the newest); a row whose version is older than its
-- deployment's newest is a stream the last cycle no longer ran. statistic / threshold: log10 of
-- the e-detector's R and of its alarm threshold A; for label_backlog the share and max_share.
CREATE TABLE IF NOT EXISTS detector_state
(
    deployment      String,
    id              String,
    algorithm       String,
    mode            String,
    type            Enum8('error_rate_drift' = 1, 'disparity_breach' = 2, 'score_drift' = 3,
                          'insufficient_evidence' = 4, 'label_backlog' = 5),
    metric          String,
    group_label     String,
    detector        String,
    severity        Enum8('info' = 1, 'warning' = 2, 'critical' = 3),
    state           Enum8('quiet' = 1, 'near' = 2, 'alarm' = 3, 'insufficient' = 4),
    statistic       Nullable(Float64),
    threshold       Nullable(Float64),
    evidence_n      Float64,
    needed          Nullable(Float64),
    evaluated_at    DateTime('UTC'),
    cycle_at        DateTime('UTC'),
    version         UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (deployment, id);
