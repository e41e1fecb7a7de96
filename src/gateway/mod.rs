//! The standalone gateway (SPEC §7): path rules, the route table, and the reverse proxy. Each
//! route is the proxy wrapped in the one pipeline's layer ([`crate::layer::RequireKey`]).

pub mod path;
pub mod proxy;
pub mod routes;
