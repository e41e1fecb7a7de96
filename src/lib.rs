//! keygate — the access layer of a multi-tenant HTTP API.
//!
//! It runs as a gateway (the `keygate` binary), or inside an axum application as a tower
//! layer: [`App`] opens the store and wires the pipeline, [`App::require`] gives a route its
//! [`Policy`] as a [`RequireKey`] layer, and [`App::guard`] adds keygate's public routes
//! (sessions, preflights, health, JWKS) and the path rules around the application's router.
//! A handler reads who called from the [`Principal`] in the request's extensions.
//!
//! ```
//! use axum::body::Body;
//! use axum::extract::{Extension, Request};
//! use axum::{Router, routing::get};
//! use keygate::{App, Config, Policy, Principal};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), keygate::StartError> {
//! // A store in memory, for the example; `sqlite://keygate.db` or `postgres://…` to keep it.
//! let config = Config::parse("[store]\nurl = \"sqlite::memory:\"\n", std::iter::empty())?;
//! let keygate = App::build(config).await?;
//! let read = keygate.require(Policy::scope("orders:read")?.with_module("orders"));
//! let orders = Router::new().route(
//!     "/api/v1/orders",
//!     get(|Extension(caller): Extension<Principal>| async move { caller.record.tenant.id.clone() }).layer(read),
//! );
//! let app = keygate.guard(orders)?;
//!
//! // Served with `axum::serve(listener, app)`; here, one request without a key.
//! let response = app.oneshot(Request::get("/api/v1/orders").body(Body::empty())?).await?;
//! assert_eq!(response.status(), 401);
//! assert_eq!(response.headers()["content-type"], "application/json");
//! # Ok(())
//! # }
//! ```
//!
//! # Features
//!
//! The default build is the gateway (the `keygate` binary's library) with everything. An
//! axum application that wants only the layer takes
//! `keygate = { version = "0.1", default-features = false }`: the SQLite store, the
//! in-process limiter, sessions, origins, scopes and standing, and nothing else. Each feature
//! adds one part:
//!
//! | feature | adds |
//! | --- | --- |
//! | `postgres` | the PostgreSQL store (`store.url = "postgres://…"`) |
//! | `redis` | the shared limiter on Redis or Redis Cluster (`rate_limit.url = "redis://…"`) |
//! | `tls` | TLS clients: `rediss://`, PostgreSQL's `sslmode`, `https://` upstreams |
//! | `gateway` | the reverse proxy, WebSockets, the public, admin and decision listeners, the admin API and console, Prometheus metrics (implies `tls`) |
//! | `cli` | the `keygate` command (implies `gateway`) |
//!
//! A setting that needs a part the build lacks is refused when the configuration loads, naming
//! the setting and the feature. Without `gateway`, keygate installs no metrics recorder: its
//! series go to whichever recorder the application installed on the `metrics` facade.
//!
//! # Layout
//!
//! The root re-exports the front door above. The modules an application may name are public;
//! the ones the binary (`src/main.rs`, `src/cli/`), the tests, benches and fuzz targets reach
//! are public but hidden from these documents (not an API); the rest are private.
//!
//! - `pipeline`: the checks of SPEC §2, in order, shared by every entry point; [`layer`]: the
//!   pipeline as a tower layer, for axum applications and the gateway alike.
//! - `secret`, [`origin`], [`scope`], [`model`]: domain types that parse, never validate later.
//! - `session`: minting and checking browser session tokens (JWT), signing keys, JWKS.
//! - `ratelimit`: fixed-window limiting behind a trait: in process, or on Redis; the
//!   failed-authentication limit.
//! - `store`: persistence behind a narrow trait, on SQLite or PostgreSQL.
//! - `cache`, `preflight`, `feed`: what keeps the hot path off the store, and the change feed
//!   that keeps it current; `usage`: requests counted per key and hour (and `lastUsedAt`),
//!   written behind, and the usage queries.
//! - `edge`: accepting connections, their caps, deadlines and TLS, for both listeners;
//!   `shutdown`: its sequence.
//! - `gateway`: the public listener's route stack, the reverse proxy and WebSockets;
//!   `paths`: the one normal form of a request path, and prefix matching; `cors`: CORS
//!   headers and preflight.
//! - `admin`: tenant and key administration, shared by the admin API (`admin::api`) and
//!   the CLI; `audit`: the audit log's entries, written by the store with each change.
//! - `request_log`: one line per request; [`logging`]: where log lines go (buffered);
//!   `metrics`: Prometheus metrics; `openapi`: the API documents.
//! - [`config`]: TOML + environment configuration; `reload`: applying a changed one (SIGHUP);
//!   `app`: wiring and serving.
//! - `quickstart`: the one-command demo; `seed`: many tenants and keys at once, for load
//!   tests (`keygate seed`).
//! - `error`: the one table of wire error codes and the error envelope.
//! - `trusted`: trusted proxies, and the client address they make; `tls`: TLS clients
//!   (rustls); `time`: the clock and RFC 3339.

#![warn(unreachable_pub)]

// The front door: what an axum application guarded by keygate names.
pub use app::{App, StartError};
pub use config::Config;
pub use layer::{RequireKey, normalize_paths};
pub use pipeline::{Channel, Policy, Principal};
pub use shutdown::signal as shutdown_signal;

// Modules whose types the front door's carry (a principal's key and tenant, a scope, an
// origin, the configuration's sections) and the log setup an application shares.
pub mod config;
pub mod layer;
pub mod logging;
pub mod model;
pub mod origin;
pub mod scope;

// The binary's, the tests', the benches' and the fuzz targets' way in: public so that they
// can reach it, hidden from the documentation because it is not an API and may change.
#[doc(hidden)]
pub mod admin;
#[doc(hidden)]
pub mod app;
#[doc(hidden)]
pub mod audit;
#[doc(hidden)]
#[cfg(feature = "gateway")]
pub mod edge;
#[doc(hidden)]
pub mod error;
#[doc(hidden)]
pub mod openapi;
#[doc(hidden)]
pub mod paths;
#[doc(hidden)]
pub mod pipeline;
#[doc(hidden)]
#[cfg(feature = "gateway")]
pub mod quickstart;
#[doc(hidden)]
pub mod ratelimit;
#[doc(hidden)]
#[cfg(feature = "gateway")]
pub mod reload;
#[doc(hidden)]
pub mod secret;
#[doc(hidden)]
pub mod seed;
#[doc(hidden)]
pub mod session;
#[doc(hidden)]
pub mod shutdown;
#[doc(hidden)]
pub mod store;
#[doc(hidden)]
pub mod time;
#[doc(hidden)]
#[cfg(feature = "tls")]
pub mod tls;
#[doc(hidden)]
pub mod usage;

// Reached by nothing outside the crate.
mod cache;
mod cors;
#[cfg(feature = "gateway")]
mod decision;
mod feed;
mod gateway;
mod metrics;
mod preflight;
mod request_log;
mod trusted;
