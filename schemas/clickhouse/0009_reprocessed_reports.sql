-- The reports stored more than once with other content (re-sent under the same identity with other figures, or
-- re-processed by another normalizer), under every policy domain any of their versions named. A read looks a report's
-- newest version up only when the report is here (services/api/current-rows.ts): every other report has one content,
-- however often it was stored (by mail and by HTTPS, a batch retried), and its rows count once as they are. Before,
-- every read looked every report up in report_versions, and that look-up was most of the cost of a domain's series
-- (13 of its 18 ms at 10 M policy rows) and grew with the days asked.
-- Written by the worker before the rows of the version that makes a report reprocessed (services/worker/reprocessing.ts).
CREATE TABLE IF NOT EXISTS reprocessed_reports
(
    policy_domain String,
    day Date,
    report_key String
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (policy_domain, day, report_key);

-- The reports stored before: those whose rows in domain_policies carry more than one version. A report whose older
-- rows were all replaced by merges has only current rows left and needs no look-up. Grouped on disk past 256 MB, so
-- a long history does not hold every key in memory.
INSERT INTO reprocessed_reports
SELECT DISTINCT policy_domain, day, report_key FROM domain_policies
WHERE (day, report_key) IN (
    SELECT day, report_key FROM domain_policies GROUP BY day, report_key HAVING min(version) != max(version))
SETTINGS max_bytes_before_external_group_by = 268435456;

-- The content of each processing of a report (its text's hash and normalizer version, services/worker/rows.ts), written by
-- the worker with its rows: the next processing of the report compares its own with these, found by version in
-- report_versions. One row per processing (merges collapse only a batch written twice): every version report_versions
-- still holds has its fingerprint. A version stored before this table has none and counts as other content.
CREATE TABLE IF NOT EXISTS report_fingerprints
(
    day Date,
    report_key String,
    fingerprint String,
    version UInt64
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (day, report_key, version)
SETTINGS index_granularity = 128;
