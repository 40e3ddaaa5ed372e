-- Schedules get an immutable uid (kept in step with the other folder): a schedule's runs are
-- the jobs whose `schedule_uid` is its uid, never those that merely share its reusable name,
-- so a schedule created under the name of a deleted one starts with no runs (its retention
-- never touches the old runs, its first run is a full backup). Schedules and runs that
-- existed before get the uid 'legacy-' || id: their history stays theirs.
ALTER TABLE schedules ADD COLUMN uid TEXT;
UPDATE schedules SET uid = 'legacy-' || id;
CREATE UNIQUE INDEX schedules_uid ON schedules (uid);
ALTER TABLE jobs ADD COLUMN schedule_uid TEXT;
UPDATE jobs SET schedule_uid = 'legacy-' || schedule_id WHERE schedule_id IS NOT NULL;
CREATE INDEX jobs_schedule_uid ON jobs (schedule_uid, state, created_at_ms);
