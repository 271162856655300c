-- Live checks of each managed domain's setup (services/common/posture), every result with its time: the records,
-- the policy as a sender fetches it, MX coverage and each MX host's TLS. One row per result of a check run.
CREATE TABLE IF NOT EXISTS posture_checks
(
    domain String,
    checked_at DateTime('UTC'),
    check_name String,
    subject String,
    severity String,
    summary String,
    detail String,
    -- The id and text of the policy fetched by this run (on its `policy` row), to tell a change without a new id.
    policy_id String,
    policy_text String
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(checked_at)
ORDER BY (domain, checked_at);
