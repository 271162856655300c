-- Tables for reads whose cost follows the question, not the history (README "Reading at scale").
-- The base tables are sorted by policy domain then day: one domain's rows are found by key, but a report's own rows
-- (all of its domains) and a day across all domains are not. The tables below are narrow copies, sorted for those
-- reads and filled at insert time by materialized views (an INSERT into a base table also writes them), plus a
-- backfill of what was stored before this migration. Every one is a ReplacingMergeTree keyed by identity like its
-- source, so duplicates collapse in merges, and every read still collapses them itself.
--
-- The newest processing of a report replaces all of its rows: every row a processing writes carries the same
-- `version`, so a report's current rows are those whose version is the report's greatest. `policy_days`, sorted by
-- (day, report_key), answers "greatest version of these reports" by key; a report's rows all have the report's day.

CREATE TABLE IF NOT EXISTS policy_days
(
    day Date,
    report_key String,
    policy_index UInt32,
    policy_domain String,
    organization String,
    policy_type String,
    sts_mode String,
    successful_sessions UInt64,
    failed_sessions UInt64,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(day)
ORDER BY (day, report_key, policy_index)
SETTINGS index_granularity = 1024;

CREATE MATERIALIZED VIEW IF NOT EXISTS policy_days_mv TO policy_days AS
SELECT day, report_key, policy_index, policy_domain, organization, policy_type, sts_mode, successful_sessions,
       failed_sessions, version
FROM policy_results;

INSERT INTO policy_days
SELECT day, report_key, policy_index, policy_domain, organization, policy_type, sts_mode, successful_sessions,
       failed_sessions, version
FROM policy_results;

-- Failure details of a day across all domains (the alert rules), sorted like policy_days.
CREATE TABLE IF NOT EXISTS failure_days
(
    day Date,
    report_key String,
    policy_index UInt32,
    detail_index UInt32,
    policy_domain String,
    organization String,
    result_type String,
    failed_session_count UInt64,
    failure_reason_code Nullable(String),
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(day)
ORDER BY (day, report_key, policy_index, detail_index)
SETTINGS index_granularity = 1024;

CREATE MATERIALIZED VIEW IF NOT EXISTS failure_days_mv TO failure_days AS
SELECT day, report_key, policy_index, detail_index, policy_domain, organization, result_type, failed_session_count,
       failure_reason_code, version
FROM failure_details;

INSERT INTO failure_days
SELECT day, report_key, policy_index, detail_index, policy_domain, organization, result_type, failed_session_count,
       failure_reason_code, version
FROM failure_details;

-- Which domains have reports on a day: the domain list's pages (by name, prefix and cursor) without reading reports.
CREATE TABLE IF NOT EXISTS domain_days
(
    day Date,
    policy_domain String
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (day, policy_domain);

CREATE MATERIALIZED VIEW IF NOT EXISTS domain_days_mv TO domain_days AS
SELECT DISTINCT day, policy_domain FROM policy_results;

INSERT INTO domain_days SELECT DISTINCT day, policy_domain FROM policy_results;

-- Domain-days with a failed session in some report: the failure-rate alert looks only at these.
CREATE TABLE IF NOT EXISTS failing_domain_days
(
    day Date,
    policy_domain String
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (day, policy_domain);

CREATE MATERIALIZED VIEW IF NOT EXISTS failing_domain_days_mv TO failing_domain_days AS
SELECT DISTINCT day, policy_domain FROM policy_results WHERE failed_sessions > 0;

INSERT INTO failing_domain_days SELECT DISTINCT day, policy_domain FROM policy_results WHERE failed_sessions > 0;

-- Which organizations reported which domains on each day: "a reporter stopped" without reading reports.
CREATE TABLE IF NOT EXISTS reporter_days
(
    day Date,
    organization String,
    policy_domain String
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (day, organization, policy_domain);

CREATE MATERIALIZED VIEW IF NOT EXISTS reporter_days_mv TO reporter_days AS
SELECT DISTINCT day, organization, policy_domain FROM policy_results;

INSERT INTO reporter_days SELECT DISTINCT day, organization, policy_domain FROM policy_results;

-- The first day each domain saw each failure result type: "never seen before" without reading the history. The
-- earliest day wins merges (rank = 65535 - day), so a pair is a few rows however long its history.
CREATE TABLE IF NOT EXISTS failure_types
(
    policy_domain String,
    result_type String,
    first_day Date,
    rank UInt16
)
ENGINE = ReplacingMergeTree(rank)
ORDER BY (policy_domain, result_type);

CREATE MATERIALIZED VIEW IF NOT EXISTS failure_types_mv TO failure_types AS
SELECT policy_domain, result_type, min(day) AS first_day, toUInt16(65535 - toUInt16(min(day))) AS rank
FROM failure_details GROUP BY policy_domain, result_type;

INSERT INTO failure_types
SELECT policy_domain, result_type, min(day) AS first_day, toUInt16(65535 - toUInt16(min(day))) AS rank
FROM failure_details GROUP BY policy_domain, result_type;

-- Reports of a day (the report list), sorted by day then key.
CREATE TABLE IF NOT EXISTS report_days
(
    day Date,
    report_key String,
    organization String,
    report_id String,
    start_time DateTime('UTC'),
    end_time DateTime('UTC'),
    policy_count UInt32,
    flags Array(String),
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(day)
ORDER BY (day, report_key)
SETTINGS index_granularity = 1024;

CREATE MATERIALIZED VIEW IF NOT EXISTS report_days_mv TO report_days AS
SELECT day, report_key, organization, report_id, start_time, end_time, policy_count, flags, version FROM reports;

INSERT INTO report_days
SELECT day, report_key, organization, report_id, start_time, end_time, policy_count, flags, version FROM reports;

-- The day of each report key: one report's rows are then found by (day, key) in every other table.
CREATE TABLE IF NOT EXISTS report_keys
(
    report_key String,
    day Date
)
ENGINE = ReplacingMergeTree
ORDER BY (report_key)
SETTINGS index_granularity = 256;

CREATE MATERIALIZED VIEW IF NOT EXISTS report_keys_mv TO report_keys AS
SELECT DISTINCT report_key, day FROM reports;

INSERT INTO report_keys SELECT DISTINCT report_key, day FROM reports;

-- The deliveries of a report, by report key (receipts is sorted by receipt id), with what the API shows of them.
-- One partition: a report's deliveries may come at any time (a mail archive imported years later), and a key is
-- looked up in every partition, so partitions by time would make a lookup cost grow with the history.
CREATE TABLE IF NOT EXISTS receipts_by_report
(
    report_key String,
    receipt_id String,
    received_at DateTime('UTC'),
    outcome String,
    channel String,
    remote_address String,
    envelope_from String,
    message_id String,
    attachment_name String,
    tls_protocol String,
    dkim_result String,
    dkim_domain String,
    dkim_selector String,
    dkim_aligned UInt8,
    dkim_key_tlsrpt UInt8,
    flags Array(String),
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (report_key, receipt_id)
SETTINGS index_granularity = 256;

CREATE MATERIALIZED VIEW IF NOT EXISTS receipts_by_report_mv TO receipts_by_report AS
SELECT report_key, receipt_id, received_at, outcome, channel, remote_address, envelope_from, message_id,
       attachment_name, tls_protocol, dkim_result, dkim_domain, dkim_selector, dkim_aligned, dkim_key_tlsrpt, flags,
       version
FROM receipts WHERE report_key != '';

INSERT INTO receipts_by_report
SELECT report_key, receipt_id, received_at, outcome, channel, remote_address, envelope_from, message_id,
       attachment_name, tls_protocol, dkim_result, dkim_domain, dkim_selector, dkim_aligned, dkim_key_tlsrpt, flags,
       version
FROM receipts WHERE report_key != '';

-- When reports of each day were last stored (the server's clock at insert): the alert evaluator looks again only
-- at days that received reports since its last run.
CREATE TABLE IF NOT EXISTS ingest_days
(
    day Date,
    inserted_at DateTime('UTC')
)
ENGINE = ReplacingMergeTree(inserted_at)
ORDER BY (day);

CREATE MATERIALIZED VIEW IF NOT EXISTS ingest_days_mv TO ingest_days AS
SELECT day, now() AS inserted_at FROM reports GROUP BY day;

INSERT INTO ingest_days SELECT day, now() AS inserted_at FROM reports GROUP BY day;

-- The dedup views follow the same rule: a report's rows are those of its newest processing. Before, an entry that a
-- newer processing no longer had (a sender re-sent the report with fewer policies) stayed in the views. Within the
-- newest processing, rows of one identity are equal (a batch written twice), so any() of each column is its value,
-- NULL included. (No argMax over tuples: ClickHouse 18.16 crashes sending such states between cluster nodes.)

CREATE OR REPLACE VIEW reports_dedup AS
SELECT
    report_key, organization, report_id, contact_info, start_time, end_time, start_raw, end_raw, day, policy_count,
    flags, extra, json_sha256, receipt_id, received_at, channel, dkim_result, dkim_domain, dkim_aligned,
    normalizer_version, latest_version
FROM
(
    SELECT
        report_key,
        any(organization) AS organization,
        any(report_id) AS report_id,
        any(contact_info) AS contact_info,
        any(start_time) AS start_time,
        any(end_time) AS end_time,
        any(start_raw) AS start_raw,
        any(end_raw) AS end_raw,
        any(day) AS day,
        any(policy_count) AS policy_count,
        any(flags) AS flags,
        any(extra) AS extra,
        any(json_sha256) AS json_sha256,
        any(normalizer_version) AS normalizer_version,
        max(version) AS latest_version
    FROM reports
    WHERE (report_key, version) IN (SELECT report_key, max(version) FROM reports GROUP BY report_key)
    GROUP BY report_key
) AS content
ANY LEFT JOIN
(
    -- The delivery facts, chosen as in 0004: the best DKIM verdict, then the first received, then the greatest id.
    SELECT
        report_key,
        argMax(receipt_id, delivery_rank) AS receipt_id,
        argMax(received_at, delivery_rank) AS received_at,
        argMax(channel, delivery_rank) AS channel,
        argMax(dkim_result, delivery_rank) AS dkim_result,
        argMax(dkim_domain, delivery_rank) AS dkim_domain,
        argMax(dkim_aligned, delivery_rank) AS dkim_aligned
    FROM
    (
        SELECT
            report_key, receipt_id, received_at, channel, dkim_result, dkim_domain, dkim_aligned,
            concat(
                toString(
                    multiIf(dkim_result = 'pass' AND dkim_aligned = 1, 5, dkim_result = 'pass', 4,
                            dkim_result = 'temperror', 3, dkim_result != '', 2, 1) * 10000000000
                    + (4294967295 - toUInt32(received_at))),
                receipt_id) AS delivery_rank
        FROM receipts
        WHERE outcome = 'stored'
    )
    GROUP BY report_key
) AS delivery USING report_key;

CREATE OR REPLACE VIEW policy_results_dedup AS
SELECT
    report_key,
    policy_index,
    any(day) AS day,
    any(organization) AS organization,
    any(report_id) AS report_id,
    any(start_time) AS start_time,
    any(end_time) AS end_time,
    any(policy_type) AS policy_type,
    any(policy_domain) AS policy_domain,
    any(policy_strings) AS policy_strings,
    any(mx_hosts) AS mx_hosts,
    any(sts_version) AS sts_version,
    any(sts_mode) AS sts_mode,
    any(sts_max_age) AS sts_max_age,
    any(sts_mx) AS sts_mx,
    any(tlsa_records) AS tlsa_records,
    any(successful_sessions) AS successful_sessions,
    any(failed_sessions) AS failed_sessions,
    any(failure_detail_count) AS failure_detail_count,
    any(flags) AS flags,
    any(extra) AS extra,
    max(version) AS latest_version
FROM policy_results
WHERE (report_key, version) IN (SELECT report_key, max(version) FROM policy_days GROUP BY report_key)
GROUP BY report_key, policy_index;

CREATE OR REPLACE VIEW failure_details_dedup AS
SELECT
    report_key,
    policy_index,
    detail_index,
    any(day) AS day,
    any(organization) AS organization,
    any(report_id) AS report_id,
    any(policy_type) AS policy_type,
    any(policy_domain) AS policy_domain,
    any(result_type) AS result_type,
    any(failed_session_count) AS failed_session_count,
    any(sending_mta_ip) AS sending_mta_ip,
    any(receiving_mx_hostname) AS receiving_mx_hostname,
    any(receiving_mx_helo) AS receiving_mx_helo,
    any(receiving_ip) AS receiving_ip,
    any(additional_information) AS additional_information,
    any(failure_reason_code) AS failure_reason_code,
    any(flags) AS flags,
    any(extra) AS extra,
    max(version) AS latest_version
FROM failure_details
WHERE (report_key, version) IN (SELECT report_key, max(version) FROM policy_days GROUP BY report_key)
GROUP BY report_key, policy_index, detail_index;
