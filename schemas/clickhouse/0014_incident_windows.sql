-- The first day of the window each domain's incidents were derived from: the scheduler derives a domain again from a
-- later day only while its stored incidents come from the current window (services/common/incidents/incremental.ts).
-- Rows written before have 1970-01-01: the first evaluation after this migration derives every domain in full.
ALTER TABLE incident_domains ADD COLUMN window_from Date;
