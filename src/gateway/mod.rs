//! The standalone gateway (SPEC §7): the route table and the reverse proxy. Each route is the
//! proxy wrapped in the one pipeline's layer ([`crate::layer::RequireKey`]). The path rules it
//! routes by are in [`crate::paths`]. WebSocket handshakes are judged like any request, then
//! relayed ([`websocket`]).

pub mod proxy;
pub mod routes;
pub mod websocket;
