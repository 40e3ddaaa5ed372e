-- What a running job has done that a later attempt may continue from (kept in step with the
-- other folder): for a backup, the cut it took at the start, the topic, the groups at the cut
-- and the segments committed to the store so far (JSON, `kvault_domain::backup_resume`).
-- Written by the job's owner under its lease; read by the replica that takes the job over.
-- NULL for jobs that keep none.
ALTER TABLE jobs ADD COLUMN checkpoint TEXT;
