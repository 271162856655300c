-- Hosted MTA-STS policies (services/mta-sts serves them; the API changes them). Every change is a new row with a new
-- policy id and a greater version; a domain's policy is its newest row. A few rows per domain: read whole.
CREATE TABLE IF NOT EXISTS sts_policies
(
    domain String,
    mode String,
    mx Array(String),
    max_age UInt32,
    policy_id String,
    changed_at DateTime('UTC'),
    -- After a switch to mode none, senders may hold the previous policy for its max_age: the domain is served, and
    -- cannot be removed, until then (RFC 8461 §8.3).
    serve_until DateTime('UTC'),
    removed UInt8,
    changed_by String,
    -- Failures the operator accepted when switching to enforce (JSON), kept with the change.
    acknowledged String,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (domain);
