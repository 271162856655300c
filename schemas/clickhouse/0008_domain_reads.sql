-- One domain's figures over many days at a cost that does not grow with the days of history behind them (README
-- "Reading at scale"). A domain's 90-day series read, per part and month, one 8,192-row granule of the wide
-- policy_results twice, and looked each report's newest version up in policy_days at a 1,024-row granule per report.
-- The two tables below are narrow and finely indexed, filled at insert time like those of 0005, with a backfill of
-- what was stored before. Both are ReplacingMergeTree keyed by identity: duplicates collapse in merges, and every
-- read still collapses them itself.

-- A domain's policy entries with the figures its summary, daily series, domain-list row and report list read.
CREATE TABLE IF NOT EXISTS domain_policies
(
    policy_domain String,
    day Date,
    report_key String,
    policy_index UInt32,
    organization String,
    policy_type String,
    sts_mode String,
    successful_sessions UInt64,
    failed_sessions UInt64,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(day)
ORDER BY (policy_domain, day, report_key, policy_index)
SETTINGS index_granularity = 256;

CREATE MATERIALIZED VIEW IF NOT EXISTS domain_policies_mv TO domain_policies AS
SELECT policy_domain, day, report_key, policy_index, organization, policy_type, sts_mode, successful_sessions,
       failed_sessions, version
FROM policy_results;

INSERT INTO domain_policies
SELECT policy_domain, day, report_key, policy_index, organization, policy_type, sts_mode, successful_sessions,
       failed_sessions, version
FROM policy_results;

-- The versions of each report (its newest is the greatest), by (day, key) as in policy_days but three columns wide
-- and indexed every 128 rows: the look-up every read makes for the reports it found (services/api/current-rows.ts).
CREATE TABLE IF NOT EXISTS report_versions
(
    day Date,
    report_key String,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(day)
ORDER BY (day, report_key)
SETTINGS index_granularity = 128;

CREATE MATERIALIZED VIEW IF NOT EXISTS report_versions_mv TO report_versions AS
SELECT DISTINCT day, report_key, version FROM policy_results;

-- Not grouped or made distinct: that would hold every key of a long history in memory at once; merges collapse them.
INSERT INTO report_versions SELECT day, report_key, version FROM policy_days;
