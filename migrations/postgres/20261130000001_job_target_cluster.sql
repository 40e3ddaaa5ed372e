-- The cluster a migration writes into (kept in step with the other folder). `cluster_id` is the
-- cluster a job reads; a migration touches a second one, and a token scoped to that cluster
-- sees the job too.
ALTER TABLE jobs ADD COLUMN target_cluster_id TEXT;
