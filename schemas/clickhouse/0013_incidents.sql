-- Incidents as the scheduler last derived them (services/common/incidents), for lists that stay fast however long
-- the history: each evaluation of a domain writes all its incidents under one version and the domain's row in
-- incident_domains; a domain's incidents are the rows of its newest version (an incident a late report replaced is
-- simply not in it). `summary` is the incident without its days and events (lists), `detail` those (its page).
CREATE TABLE IF NOT EXISTS incidents
(
    domain String,
    id String,
    kind String,
    state String,
    first_day Date,
    last_day Date,
    resolved_day Date,
    severity String,
    summary String,
    detail String,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (domain, id);

CREATE TABLE IF NOT EXISTS incident_domains
(
    domain String,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (domain);

-- When each domain last received reports (the server's clock at insert): the evaluation derives again only the
-- domains that received reports since its last run.
CREATE TABLE IF NOT EXISTS domain_ingest
(
    policy_domain String,
    inserted_at DateTime('UTC')
)
ENGINE = ReplacingMergeTree(inserted_at)
ORDER BY (policy_domain);

CREATE MATERIALIZED VIEW IF NOT EXISTS domain_ingest_mv TO domain_ingest AS
SELECT policy_domain, now() AS inserted_at FROM policy_results GROUP BY policy_domain;

INSERT INTO domain_ingest SELECT policy_domain, now() AS inserted_at FROM policy_results GROUP BY policy_domain;
