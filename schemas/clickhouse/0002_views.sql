-- Analyst views. Tables are ReplacingMergeTree, which collapses duplicates only when parts merge, some time
-- later; these views collapse them at query time, so no query ever counts a report twice. Query these, not the
-- tables, for any figure. GROUP BY (not FINAL) keeps them correct on a Distributed table too, whatever the
-- sharding.


-- One row per distinct report.
CREATE VIEW IF NOT EXISTS reports_dedup AS
SELECT
    report_key,
    argMax(organization, version) AS organization,
    argMax(report_id, version) AS report_id,
    argMax(contact_info, version) AS contact_info,
    argMax(start_time, version) AS start_time,
    argMax(end_time, version) AS end_time,
    argMax(start_raw, version) AS start_raw,
    argMax(end_raw, version) AS end_raw,
    argMax(day, version) AS day,
    argMax(policy_count, version) AS policy_count,
    argMax(flags, version) AS flags,
    argMax(extra, version) AS extra,
    argMax(json_sha256, version) AS json_sha256,
    argMax(receipt_id, version) AS receipt_id,
    argMax(received_at, version) AS received_at,
    argMax(channel, version) AS channel,
    argMax(dkim_result, version) AS dkim_result,
    argMax(dkim_domain, version) AS dkim_domain,
    argMax(dkim_aligned, version) AS dkim_aligned,
    argMax(normalizer_version, version) AS normalizer_version,
    max(version) AS latest_version
FROM reports
GROUP BY report_key;

-- One row per distinct report and policy entry.
CREATE VIEW IF NOT EXISTS policy_results_dedup AS
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
    argMax(sts_max_age, version) AS sts_max_age,
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

-- One row per distinct failure detail.
CREATE VIEW IF NOT EXISTS failure_details_dedup AS
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
    argMax(sending_mta_ip, version) AS sending_mta_ip,
    argMax(receiving_mx_hostname, version) AS receiving_mx_hostname,
    argMax(receiving_mx_helo, version) AS receiving_mx_helo,
    argMax(receiving_ip, version) AS receiving_ip,
    argMax(additional_information, version) AS additional_information,
    argMax(failure_reason_code, version) AS failure_reason_code,
    argMax(flags, version) AS flags,
    argMax(extra, version) AS extra,
    max(version) AS latest_version
FROM failure_details
GROUP BY report_key, policy_index, detail_index;

-- Daily aggregates per policy domain, policy type and STS mode: sums over distinct report policy entries.
CREATE VIEW IF NOT EXISTS policy_daily AS
SELECT
    day,
    policy_domain,
    policy_type,
    sts_mode,
    count() AS policy_entries,
    uniqExact(report_key) AS reports,
    uniqExact(organization) AS organizations,
    sum(successful_sessions) AS successful_sessions,
    sum(failed_sessions) AS failed_sessions
FROM policy_results_dedup
GROUP BY day, policy_domain, policy_type, sts_mode;

-- Daily aggregates per policy domain with each session counted once. One report may list the same sessions
-- under several policy entries for one domain (Microsoft sends an sts and a tlsa entry for the same sessions):
-- within a report and domain we take the largest count of the entries, never their sum; across reports we sum.
CREATE VIEW IF NOT EXISTS domain_daily AS
SELECT
    day,
    policy_domain,
    count() AS reports,
    uniqExact(organization) AS organizations,
    sum(successful) AS successful_sessions,
    sum(failed) AS failed_sessions
FROM
(
    SELECT
        report_key,
        policy_domain,
        any(day) AS day,
        any(organization) AS organization,
        max(successful_sessions) AS successful,
        max(failed_sessions) AS failed
    FROM policy_results_dedup
    GROUP BY report_key, policy_domain
)
GROUP BY day, policy_domain;

-- Daily failed sessions per policy domain and result type, from the failure details.
CREATE VIEW IF NOT EXISTS failure_daily AS
SELECT
    day,
    policy_domain,
    result_type,
    count() AS details,
    uniqExact(report_key) AS reports,
    sum(failed_session_count) AS failed_sessions
FROM failure_details_dedup
GROUP BY day, policy_domain, result_type;
