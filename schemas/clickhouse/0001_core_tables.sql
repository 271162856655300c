-- Core tables. Runs on ClickHouse 18.16 and current ClickHouse: no LowCardinality, TTL, codecs or Map.
-- Every table is a ReplacingMergeTree keyed by the identity of what it holds, so a report delivered twice or
-- re-processed after a crash collapses to one row; the *_dedup views (0002) collapse at query time, before
-- background merges have run. `version` is the processing time in ms: the newest processing wins.

-- One row per report. report_key = sha256(organization, report-id, start, end), see services/worker/normalize.ts.
CREATE TABLE IF NOT EXISTS reports
(
    report_key String,
    organization String,
    report_id String,
    contact_info Nullable(String),
    start_time DateTime('UTC'),
    end_time DateTime('UTC'),
    start_raw String,
    end_raw String,
    day Date,
    policy_count UInt32,
    flags Array(String),
    extra String,
    json_sha256 String,
    receipt_id String,
    received_at DateTime('UTC'),
    channel String,
    -- DKIM verdict of the receipt these rows come from ('' for HTTPS; see receipts for every delivery).
    dkim_result String,
    dkim_domain String,
    dkim_aligned UInt8,
    normalizer_version UInt16,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(day)
ORDER BY (report_key);

-- One row per report and policy entry.
CREATE TABLE IF NOT EXISTS policy_results
(
    report_key String,
    policy_index UInt32,
    day Date,
    organization String,
    report_id String,
    start_time DateTime('UTC'),
    end_time DateTime('UTC'),
    policy_type String,
    policy_domain String,
    policy_strings Array(String),
    mx_hosts Array(String),
    sts_version String,
    sts_mode String,
    sts_max_age Nullable(UInt32),
    sts_mx Array(String),
    tlsa_records Array(String),
    successful_sessions UInt64,
    failed_sessions UInt64,
    failure_detail_count UInt32,
    flags Array(String),
    extra String,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(day)
ORDER BY (policy_domain, day, report_key, policy_index);

-- One row per failure detail, every field; absent optional fields are NULL.
CREATE TABLE IF NOT EXISTS failure_details
(
    report_key String,
    policy_index UInt32,
    detail_index UInt32,
    day Date,
    organization String,
    report_id String,
    policy_type String,
    policy_domain String,
    result_type String,
    failed_session_count UInt64,
    sending_mta_ip Nullable(String),
    receiving_mx_hostname Nullable(String),
    receiving_mx_helo Nullable(String),
    receiving_ip Nullable(String),
    additional_information Nullable(String),
    failure_reason_code Nullable(String),
    flags Array(String),
    extra String,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(day)
ORDER BY (policy_domain, day, report_key, policy_index, detail_index);

-- The report JSON exactly as received (after decompression), unknown keys and all. One row per distinct text:
-- a sender that re-sends a report under the same identity with other content keeps both texts here (the
-- normalized tables hold the newest; reports.json_sha256 says which).
CREATE TABLE IF NOT EXISTS raw_reports
(
    report_key String,
    json_sha256 String,
    day Date,
    receipt_id String,
    received_at DateTime('UTC'),
    raw_json String,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(day)
ORDER BY (report_key, json_sha256);

-- One row per delivery (HTTP request, mail attachment): duplicates of a report show up here, and only here.
CREATE TABLE IF NOT EXISTS receipts
(
    receipt_id String,
    received_at DateTime('UTC'),
    processed_at DateTime('UTC'),
    channel String,
    remote_address String,
    user_agent String,
    content_type String,
    content_encoding String,
    path String,
    body_bytes UInt64,
    body_sha256 String,
    outcome String,
    report_key String,
    reject_reason String,
    flags Array(String),
    -- SMTP receipts: envelope, TLS, headers and the DKIM verdict (RFC 8460 §3); empty for HTTPS.
    envelope_from String,
    envelope_to Array(String),
    helo String,
    tls_protocol String,
    tls_cipher String,
    message_id String,
    subject String,
    attachment_name String,
    dkim_result String,
    dkim_domain String,
    dkim_selector String,
    dkim_aligned UInt8,
    dkim_key_tlsrpt UInt8,
    meta String,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(received_at)
ORDER BY (receipt_id);

-- Reports that can never be stored, with the reason, the raw bytes (base64) and the receipt metadata.
CREATE TABLE IF NOT EXISTS rejects
(
    receipt_id String,
    received_at DateTime('UTC'),
    rejected_at DateTime('UTC'),
    channel String,
    remote_address String,
    user_agent String,
    content_type String,
    content_encoding String,
    path String,
    reason String,
    detail String,
    body_bytes UInt64,
    body_sha256 String,
    raw_base64 String,
    meta String,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(received_at)
ORDER BY (receipt_id);
