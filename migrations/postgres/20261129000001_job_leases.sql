-- Leased jobs for several replicas on one database (kept in step with the other folder).
-- A running job is owned by the replica named in `owner` until `lease_expires_at_ms`; the
-- owner's heartbeat pushes the lease forward, and another replica takes over a job whose lease
-- has expired. `backup_id` is the archive a job writes or reads (a taken-over backup keeps it);
-- `attempts` counts takeovers.
ALTER TABLE jobs ADD COLUMN owner TEXT;
ALTER TABLE jobs ADD COLUMN lease_expires_at_ms BIGINT;
ALTER TABLE jobs ADD COLUMN backup_id TEXT;
ALTER TABLE jobs ADD COLUMN attempts BIGINT NOT NULL DEFAULT 1;
CREATE INDEX jobs_lease ON jobs (state, lease_expires_at_ms);
