//! HTTP-level tests: a real server on a random port, a fresh PostgreSQL database per test.
//! Most run on the in-memory engine (auth, roles, limits, jobs, errors, OpenAPI); `operations`
//! runs on the shared nisshi broker, because it tests what Kafka does.

mod auth;
mod chains;
mod dry_run;
mod errors;
mod helpers;
mod jobs;
mod keys;
mod limits;
mod metrics;
mod monitoring;
mod object_lock;
mod operations;
mod records;
mod reference;
mod retention;
mod schedule_runs;
mod schedules;
mod sets;
mod shapes;
mod test_data;
mod writers;
