//! The HTTP edge: the public listener (sessions, preflight, health, JWKS), the admin listener,
//! and the request log shared by both.

pub mod admin;
pub mod connection;
pub mod log;
pub mod public;
pub mod serve;
