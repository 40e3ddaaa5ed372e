-- The topics a restore or migration writes into (kept in step with the other folder): one row
-- per (job, cluster, topic). Admission refuses a job one of whose targets a running job holds,
-- so at most one restore or migration writes into a topic at a time across every replica; a
-- row stops counting when its job leaves `running`.
CREATE TABLE job_targets (
    job_id TEXT NOT NULL,
    cluster_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    PRIMARY KEY (job_id, cluster_id, topic)
);
CREATE INDEX job_targets_topic ON job_targets (cluster_id, topic);
