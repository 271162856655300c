-- Alerts found by the API's evaluator (services/api/alerts.ts). alert_id is derived from what the alert is about
-- (rule, domain, day …), so finding it again never makes a second alert; seq orders alerts for pollers
-- (GET /v1/alerts?since=<cursor>): each alert is returned once per cursor position.
CREATE TABLE IF NOT EXISTS alerts
(
    alert_id String,
    seq UInt64,
    rule String,
    severity String,
    policy_domain String,
    day Date,
    organization String,
    result_type String,
    title String,
    detail String,
    created_at DateTime('UTC')
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(created_at)
ORDER BY (alert_id);

-- One row per alert, with the sequence number it was first given. (The inner query names it first_seq: an
-- alias `seq` would replace `seq` inside the other aggregates.)
CREATE VIEW IF NOT EXISTS alerts_dedup AS
SELECT
    alert_id,
    first_seq AS seq,
    rule,
    severity,
    policy_domain,
    day,
    organization,
    result_type,
    title,
    detail,
    created_at
FROM
(
    SELECT
        alert_id,
        min(seq) AS first_seq,
        argMin(rule, seq) AS rule,
        argMin(severity, seq) AS severity,
        argMin(policy_domain, seq) AS policy_domain,
        argMin(day, seq) AS day,
        argMin(organization, seq) AS organization,
        argMin(result_type, seq) AS result_type,
        argMin(title, seq) AS title,
        argMin(detail, seq) AS detail,
        argMin(created_at, seq) AS created_at
    FROM alerts
    GROUP BY alert_id
);
