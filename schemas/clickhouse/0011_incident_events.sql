-- What people did to incidents (services/common/incidents): acknowledge, mute until a time, unmute, resolve, reopen.
-- Incidents themselves are derived from report days on every read, so only these acts are stored. Each row names
-- the incident by id and by what it is about (kind, result type, subject, first day), so an act follows its incident
-- when a late report moves the incident's first day (and with it its id). A few rows per incident: read whole.
CREATE TABLE IF NOT EXISTS incident_events
(
    event_id String,
    incident_id String,
    domain String,
    kind String,
    result_type String,
    subject String,
    first_day Date,
    last_day Date,
    event String,
    until DateTime('UTC'),
    actor String,
    note String,
    at DateTime('UTC'),
    -- Milliseconds since 1970: the order of acts within one second (18.16 has no DateTime64).
    at_ms UInt64
)
ENGINE = ReplacingMergeTree
ORDER BY (domain, event_id);
