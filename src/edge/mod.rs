//! The HTTP edge: what happens to a connection before a router sees its requests, the same for
//! the public and the admin listener (SPEC §9). In the order a connection meets it:
//!
//! - [`listener`]: accepting under `server.max_connections`, on serving threads or the caller's
//!   runtime; the drain at shutdown ([`crate::shutdown`] says when);
//! - [`tls`]: the listener's certificate, re-read when its files change;
//! - [`connection`]: one connection from accept to close — the head deadline, the head's size
//!   (431), `Connection: close` and `GOAWAY` while draining, upgrades handed on;
//! - [`limits`]: what a listener allows its connections.
//!
//! What the routers do with a request is the gateway's (`crate::gateway`) and the admin API's
//! ([`crate::admin::api`]); the edge knows neither.

pub mod connection;
pub mod limits;
pub mod listener;
pub mod tls;
