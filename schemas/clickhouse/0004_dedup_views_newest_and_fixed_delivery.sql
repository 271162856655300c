-- (ClickHouse 18.16 runs CREATE OR REPLACE VIEW as a drop and a create: services/common/clickhouse-compat.ts.)
-- The dedup views again, with two fixes (the tables are unchanged):
-- 1. The newest version wins for every column: argMax skips NULLs, so a newer row with NULL in a Nullable column
--    showed the older value. argMax over a one-element tuple keeps the NULL.
-- 2. A report delivered more than once (a rua may list mailto: and https:) shows the same delivery facts whatever
--    the order the copies were processed in. They were the newest processing's, and merges keep only that row;
--    they now come from `receipts`, which keeps every delivery: the one with the best DKIM verdict (pass by the
--    submitter, pass, temperror, none or fail, no DKIM at all over HTTPS), then the first received, then the
--    greatest receipt id.

CREATE OR REPLACE VIEW reports_dedup AS
SELECT
    report_key, organization, report_id, contact_info, start_time, end_time, start_raw, end_raw, day, policy_count,
    flags, extra, json_sha256, receipt_id, received_at, channel, dkim_result, dkim_domain, dkim_aligned,
    normalizer_version, latest_version
FROM
(
    SELECT
        report_key,
        argMax(organization, version) AS organization,
        argMax(report_id, version) AS report_id,
        argMax(tuple(contact_info), version).1 AS contact_info,
        argMax(start_time, version) AS start_time,
        argMax(end_time, version) AS end_time,
        argMax(start_raw, version) AS start_raw,
        argMax(end_raw, version) AS end_raw,
        argMax(day, version) AS day,
        argMax(policy_count, version) AS policy_count,
        argMax(flags, version) AS flags,
        argMax(extra, version) AS extra,
        argMax(json_sha256, version) AS json_sha256,
        argMax(normalizer_version, version) AS normalizer_version,
        max(version) AS latest_version
    FROM reports
    GROUP BY report_key
) AS content
ANY LEFT JOIN
(
    -- The delivery facts come from receipts (one row per delivery, kept by every merge), chosen by the fixed rule.
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
            -- Fixed width (11 digits), so the text orders as the number: verdict, then the earliest receipt.
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
    argMax(day, version) AS day,
    argMax(organization, version) AS organization,
    argMax(report_id, version) AS report_id,
    argMax(start_time, version) AS start_time,
    argMax(end_time, version) AS end_time,
    argMax(policy_type, version) AS policy_type,
    argMax(policy_domain, version) AS policy_domain,
    argMax(policy_strings, version) AS policy_strings,
    argMax(mx_hosts, version) AS mx_hosts,
    argMax(sts_version, version) AS sts_version,
    argMax(sts_mode, version) AS sts_mode,
    argMax(tuple(sts_max_age), version).1 AS sts_max_age,
    argMax(sts_mx, version) AS sts_mx,
    argMax(tlsa_records, version) AS tlsa_records,
    argMax(successful_sessions, version) AS successful_sessions,
    argMax(failed_sessions, version) AS failed_sessions,
    argMax(failure_detail_count, version) AS failure_detail_count,
    argMax(flags, version) AS flags,
    argMax(extra, version) AS extra,
    max(version) AS latest_version
FROM policy_results
GROUP BY report_key, policy_index;

CREATE OR REPLACE VIEW failure_details_dedup AS
SELECT
    report_key,
    policy_index,
    detail_index,
    argMax(day, version) AS day,
    argMax(organization, version) AS organization,
    argMax(report_id, version) AS report_id,
    argMax(policy_type, version) AS policy_type,
    argMax(policy_domain, version) AS policy_domain,
    argMax(result_type, version) AS result_type,
    argMax(failed_session_count, version) AS failed_session_count,
    argMax(tuple(sending_mta_ip), version).1 AS sending_mta_ip,
    argMax(tuple(receiving_mx_hostname), version).1 AS receiving_mx_hostname,
    argMax(tuple(receiving_mx_helo), version).1 AS receiving_mx_helo,
    argMax(tuple(receiving_ip), version).1 AS receiving_ip,
    argMax(tuple(additional_information), version).1 AS additional_information,
    argMax(tuple(failure_reason_code), version).1 AS failure_reason_code,
    argMax(flags, version) AS flags,
    argMax(extra, version) AS extra,
    max(version) AS latest_version
FROM failure_details
GROUP BY report_key, policy_index, detail_index;
