//! keygate — the access layer of a multi-tenant HTTP API.
//!
//! # Layout
//!
//! - [`pipeline`]: the checks of SPEC §2, in order, shared by every entry point.
//! - [`secret`], [`origin`], [`scope`], [`model`]: domain types that parse, never validate later.
//! - [`session`]: minting and checking browser session tokens (JWT), signing keys, JWKS.
//! - [`ratelimit`]: fixed-window limiting behind a trait; in-process backend.
//! - [`store`]: persistence behind a narrow trait; SQLite backend.
//! - [`cache`], [`preflight`], [`watch`], [`usage`]: what keeps the hot path off the store, and
//!   the change feed that keeps it current.
//! - [`admin`]: tenant and key administration, shared by the admin API and the CLI.
//! - [`layer`]: the pipeline as a tower layer, for axum applications and the gateway alike.
//! - [`paths`]: the one normal form of a request path, and prefix matching.
//! - [`gateway`]: routes and the reverse proxy.
//! - [`http`]: the public and admin listeners; [`cors`]: CORS headers and preflight;
//!   [`metrics`]: Prometheus metrics; [`openapi`]: the API document.
//! - [`config`]: TOML + environment configuration; [`reload`]: applying a changed one (SIGHUP);
//!   [`app`]: wiring and serving.
//! - [`logging`]: where log lines go; the request log is buffered.
//! - [`seed`]: many tenants and keys at once, for load tests (`keygate seed`).
//! - [`error`]: the one table of wire error codes and the error envelope.
//! - [`trusted`]: trusted proxies, and the client address they make.
//! - [`tls`]: TLS configuration (rustls).

pub mod admin;
pub mod app;
pub mod cache;
pub mod config;
pub mod cors;
pub mod error;
pub mod gateway;
pub mod http;
pub mod layer;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod openapi;
pub mod origin;
pub mod paths;
pub mod pipeline;
pub mod preflight;
pub mod quickstart;
pub mod ratelimit;
pub mod reload;
pub mod scope;
pub mod secret;
pub mod seed;
pub mod session;
pub mod store;
pub mod time;
pub mod tls;
pub mod trusted;
pub mod usage;
pub mod watch;
