//! HTTP-level tests: a real server on a random port, a fresh PostgreSQL database per test, the
//! shared nisshi broker as cluster `local`.

mod auth;
mod errors;
mod helpers;
mod jobs;
mod limits;
mod monitoring;
mod operations;
