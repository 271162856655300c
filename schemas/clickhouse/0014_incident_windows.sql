-- The first day of the window each domain's incidents were derived from, written with each of its versions: the
-- scheduler derives a domain again from a later day only while its stored incidents come from the current window
-- (services/common/incidents/incremental.ts). A domain without a row here (stored before this migration) counts as
-- derived from another window: the first evaluation after it derives every domain in full. A table of its own, not a
-- column of incident_domains: ClickHouse 18.16 refuses ALTER … ON CLUSTER on a Distributed table over replicas.
CREATE TABLE IF NOT EXISTS incident_windows
(
    domain String,
    window_from Date,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (domain);
