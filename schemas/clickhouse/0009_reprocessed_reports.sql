-- The reports stored more than once (re-sent under the same identity, delivered twice, re-processed after a crash),
-- under every policy domain any of their versions named. A read looks a report's newest version up only when the
-- report is here (services/api/current-rows.ts): every other report has one version, and its rows are current as
-- they are. Before, every read looked every report up in report_versions, and that look-up was most of the cost of a
-- domain's series (13 of its 18 ms at 10 M policy rows) and grew with the days asked.
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
