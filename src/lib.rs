//! keygate — the access layer of a multi-tenant HTTP API.
//!
//! # Layout
//!
//! - [`pipeline`]: the checks of SPEC §2, in order, shared by every entry point; [`layer`]: the
//!   pipeline as a tower layer, for axum applications and the gateway alike.
//! - [`secret`], [`origin`], [`scope`], [`model`]: domain types that parse, never validate later.
//! - [`session`]: minting and checking browser session tokens (JWT), signing keys, JWKS.
//! - [`ratelimit`]: fixed-window limiting behind a trait: in process, or on Redis; the
//!   failed-authentication limit.
//! - [`store`]: persistence behind a narrow trait, on SQLite or PostgreSQL.
//! - [`cache`], [`preflight`], [`feed`], [`usage`]: what keeps the hot path off the store, and
//!   the change feed that keeps it current.
//! - [`edge`]: accepting connections, their caps, deadlines and TLS, for both listeners;
//!   [`shutdown`]: its sequence.
//! - [`gateway`]: the public listener's route stack, the reverse proxy and WebSockets;
//!   [`paths`]: the one normal form of a request path, and prefix matching; [`cors`]: CORS
//!   headers and preflight.
//! - [`admin`]: tenant and key administration, shared by the admin API ([`admin::api`]) and
//!   the CLI.
//! - [`request_log`]: one line per request; [`logging`]: where log lines go (buffered);
//!   [`metrics`]: Prometheus metrics; [`openapi`]: the API documents.
//! - [`config`]: TOML + environment configuration; [`reload`]: applying a changed one (SIGHUP);
//!   [`app`]: wiring and serving.
//! - [`quickstart`]: the one-command demo; [`seed`]: many tenants and keys at once, for load
//!   tests (`keygate seed`).
//! - [`error`]: the one table of wire error codes and the error envelope.
//! - [`trusted`]: trusted proxies, and the client address they make; [`tls`]: TLS clients
//!   (rustls); [`time`]: the clock and RFC 3339.

pub mod admin;
pub mod app;
pub mod cache;
pub mod config;
pub mod cors;
pub mod edge;
pub mod error;
pub mod feed;
pub mod gateway;
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
pub mod request_log;
pub mod scope;
pub mod secret;
pub mod seed;
pub mod session;
pub mod shutdown;
pub mod store;
pub mod time;
pub mod tls;
pub mod trusted;
pub mod usage;
