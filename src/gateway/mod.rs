//! The public listener's routes (SPEC §7): keygate's own paths and the configured routes, each
//! judged by the one pipeline ([`crate::layer::RequireKey`]) and then answered, or forwarded by
//! the reverse proxy. [`stack`] assembles them, in the order a request meets them; the path
//! rules they route by are in [`crate::paths`]. WebSocket handshakes are judged like any
//! request, then relayed and judged again at every change they depend on ([`websocket`]).

#[cfg(feature = "gateway")]
pub(crate) mod proxy;
pub(crate) mod public;
pub(crate) mod routes;
pub(crate) mod stack;
#[cfg(feature = "gateway")]
pub(crate) mod websocket;
