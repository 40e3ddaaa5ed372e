-- Resumable jobs (kept in step with the other folder).
-- `journal`: what a restore or migration recorded so that the replica taking its job over
-- continues it exactly (JSON: per target topic the start record written before the first
-- produce, and the results of finished topics). Written only by the job's owner.
-- `job_attempts`: one row per attempt (1 at admission, one more per takeover), with when it
-- started, on which replica, and operation-specific JSON on where a resumed attempt continued.
ALTER TABLE jobs ADD COLUMN journal TEXT;
CREATE TABLE job_attempts (
    job_id TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    owner TEXT NOT NULL,
    started_at_ms BIGINT NOT NULL,
    resumed_from TEXT,
    PRIMARY KEY (job_id, attempt)
);
