-- Every delivery of a forwarded report (services/scheduler/forward.ts): one row per attempt outcome; the newest of a
-- delivery (greatest version) is its state: delivered, retrying (with the last reason) or failed (gave up, with the
-- reason). A delivery is one report and one destination (forward_id); an https destination is kept as its origin.
CREATE TABLE IF NOT EXISTS forward_deliveries
(
    forward_id String,
    report_key String,
    receipt_id String,
    destination String,
    state String,
    attempts UInt32,
    error String,
    at DateTime('UTC'),
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(at)
ORDER BY (report_key, forward_id);
