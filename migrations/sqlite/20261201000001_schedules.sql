-- Backup schedules (kept in step with the other folder). `request` is the schedule as posted
-- (JSON, with its id filled in); `next_run_at_ms` is when the next run is due (NULL: a cron
-- expression that never matches again); `last_error` says why the last due run could not
-- start. Runs are jobs whose `schedule_id` names the schedule: the newest completed one is the
-- tip of the schedule's chain, and a running one keeps the next from starting.
CREATE TABLE schedules (
    id TEXT PRIMARY KEY,
    cluster_id TEXT NOT NULL,
    subject TEXT NOT NULL,
    request TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    next_run_at_ms BIGINT,
    last_error TEXT
);
CREATE INDEX schedules_due ON schedules (next_run_at_ms);
ALTER TABLE jobs ADD COLUMN schedule_id TEXT;
CREATE INDEX jobs_schedule ON jobs (schedule_id, state, created_at_ms);
