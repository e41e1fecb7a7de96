//! keygate's integration tests, in one binary (one link of the crate, and one process whose
//! tests run side by side): each module is a real keygate spoken to over HTTP, on port 0, with
//! a real recording upstream. `common` is the harness.
//!
//!     cargo test --test it                 # all of them
//!     cargo test --test it websocket::     # one module

// A binary exports nothing: `pub` here says what the harness offers the test modules.
#![allow(unreachable_pub)]

mod common;

mod admin_api;
mod architecture;
mod audit;
mod browser;
mod browser_client;
mod change_feed;
mod cli;
mod console;
mod cors_and_limits;
mod decisions;
mod gateway;
mod js_client;
mod layer_example;
mod lifecycle;
mod logging;
mod openapi;
mod operations;
mod properties;
mod proxies;
mod quickstart;
mod quotas;
mod redis_cluster;
mod redis_limits;
mod restart;
mod rotation;
mod security;
mod sessions;
mod sessions_table;
mod shutdown;
mod store_outage;
mod tls;
mod unknown_keys;
mod usage;
mod websocket;
