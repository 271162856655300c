-- Every copy of a report that was read (each delivery of it: a mail, a POST, a mailbox message, an import, an
-- operator's choice), with how far its origin is trusted and its figures. Of a report's copies, one is counted: the
-- best trusted, among equals the first received (services/worker/trust.ts); a copy with other figures is a conflict,
-- kept here and in raw_reports, counted nowhere unless an operator chooses it. `version` is the copy's rank in that
-- order, and the version its rows are written under when it is counted.
CREATE TABLE IF NOT EXISTS report_copies
(
    day Date,
    report_key String,
    receipt_id String,
    json_sha256 String,
    -- What the copy says, apart from how it is written (services/worker/rows.ts figuresDigest): copies with the same
    -- figures are the same report; the copies stored before this table have their text's hash here.
    figures_sha256 String,
    -- 1 HTTPS POST or report file, 2 mail without an aligned DKIM pass, 3 mail with one, 4 an operator's choice.
    trust UInt8,
    received_at DateTime('UTC'),
    channel String,
    remote_address String,
    dkim_result String,
    dkim_domain String,
    dkim_aligned UInt8,
    organization String,
    report_id String,
    policy_count UInt32,
    -- NULL for the copies recorded from the reports stored before this table.
    successful_sessions Nullable(UInt64),
    failed_sessions Nullable(UInt64),
    normalizer_version UInt16,
    chosen_by String,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(day)
ORDER BY (day, report_key, receipt_id)
SETTINGS index_granularity = 256;

-- The copies stored so far, as the rows of each processing that `reports` still holds say, ranked as the worker
-- ranks them: trust, then the first received (its time in milliseconds, inverted), then the normalizer.
INSERT INTO report_copies
SELECT day, report_key, receipt_id, json_sha256, json_sha256 AS figures_sha256,
    multiIf(dkim_result = 'pass' AND dkim_aligned = 1, 3, dkim_result != '', 2, 1) AS trust,
    received_at, channel, '' AS remote_address, dkim_result, dkim_domain, dkim_aligned, organization, report_id,
    policy_count, CAST(NULL AS Nullable(UInt64)) AS successful_sessions,
    CAST(NULL AS Nullable(UInt64)) AS failed_sessions, normalizer_version, '' AS chosen_by,
    trust * 1125899906842624 + (4398046511103 - toUInt64(received_at) * 1000) * 256 + normalizer_version AS version
FROM reports;
