-- Every delivery of a notification (services/scheduler/notify): one row per attempt outcome, the newest of a delivery
-- (greatest version) is its state: delivered, retrying (with the last reason) or failed (gave up, with the reason).
-- Destinations are kept as they may be shown: a webhook URL's secret path is left out.
CREATE TABLE IF NOT EXISTS notification_deliveries
(
    delivery_id String,
    notification_id String,
    kind String,
    domains Array(String),
    title String,
    channel String,
    destination String,
    state String,
    attempts UInt32,
    error String,
    at DateTime('UTC'),
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(at)
ORDER BY (delivery_id);
