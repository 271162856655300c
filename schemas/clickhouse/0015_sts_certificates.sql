-- The certificate of each hosted domain's policy host (mta-sts.<domain>) as the policy host finds it, a row each time
-- its state changes: issued, expired, unusable (it does not name the host), pending (being ordered from the ACME
-- CA), failed (the order failed: the reason) or missing (none, and no ACME CA configured). The API answers a policy
-- change with state pending-certificate until the newest row says issued; the dashboard shows the history.
CREATE TABLE IF NOT EXISTS sts_certificates
(
    host String,
    state String,
    valid_from DateTime('UTC'),
    valid_until DateTime('UTC'),
    issuer String,
    reason String,
    checked_at DateTime('UTC'),
    version UInt64
)
ENGINE = MergeTree
ORDER BY (host, version);
