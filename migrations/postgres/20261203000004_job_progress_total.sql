-- The messages a job expects to move, once it knows (kept in step with the other folder):
-- written by the lease heartbeat with the progress, so any replica can report percent and ETA.
-- NULL while unknown.
ALTER TABLE jobs ADD COLUMN progress_total BIGINT;
