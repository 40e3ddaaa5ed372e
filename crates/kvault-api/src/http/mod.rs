//! The HTTP edge: the routes, the request extractors, JWT authentication and the request rate
//! limits. Everything here answers one request; the jobs it starts run in [`crate::engine`].

pub mod address_limit;
pub mod auth;
pub mod extract;
pub mod rate_limit;
pub mod routes;
pub mod state;
pub(crate) mod track;
