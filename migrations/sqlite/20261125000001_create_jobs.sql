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
    progress_messages INTEGER NOT NULL DEFAULT 0,
    progress_bytes INTEGER NOT NULL DEFAULT 0,
    created_at_ms INTEGER NOT NULL,
    finished_at_ms INTEGER,
    duration_ms INTEGER
);
CREATE INDEX jobs_state_kind ON jobs (state, kind);
CREATE INDEX jobs_created ON jobs (created_at_ms);
