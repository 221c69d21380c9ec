"""Help texts shared by options of several commands."""

STORE_HELP = "clickhouse://user:pass@host:9000/db or chdb:///path (default: FAIRWATCH_CLICKHOUSE)"
RATIO_FLOOR_HELP = ("FMR below this counts as this in the ratio differentials (max/min, Max/GeoMean, IR), so"
                    " zero-error groups give finite ratio bounds; IR needs both floors (default: none; a report takes its --policy"
                    " file's ratio_floor).")
