-- Jobs: one row per backup, restore, migration, drain or verify. Kept in step with
-- migrations/sqlite: same columns, same names, portable types (times are Unix milliseconds,
-- JSON is text) so one set of queries serves both databases.
CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    cluster_id TEXT,
    subject TEXT NOT NULL,
    state TEXT NOT NULL,
    request TEXT NOT NULL,
    result TEXT,
    error TEXT,
    progress_messages BIGINT NOT NULL DEFAULT 0,
    progress_bytes BIGINT NOT NULL DEFAULT 0,
    created_at_ms BIGINT NOT NULL,
    finished_at_ms BIGINT,
    duration_ms BIGINT
);
CREATE INDEX jobs_state_kind ON jobs (state, kind);
CREATE INDEX jobs_created ON jobs (created_at_ms);
