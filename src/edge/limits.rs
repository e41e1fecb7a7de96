//! What a listener allows its connections, and the places it waits for when it drains.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::config::Config;

/// Places held outside the listener's cap that shutdown's drain waits for too: upgraded
/// connections leave `server.max_connections` (SPEC §17) and hold one of these instead.
#[derive(Clone)]
pub struct AlsoDrain {
    pub permits: Arc<Semaphore>,
    pub count: u32,
}

/// What a listener allows its connections.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// From accept, or from the end of the last request, to a complete request head; `None`
    /// turns the deadline off.
    pub head_deadline: Option<Duration>,
    pub max_connections: u32,
    /// The largest request head answered; over it, 431.
    pub max_header_bytes: usize,
    /// How long in-flight requests get to finish once shutdown begins.
    pub drain: Duration,
}

impl ConnectionLimits {
    pub fn from_config(config: &Config) -> Self {
        Self {
            head_deadline: config.header_read_timeout(),
            max_connections: config.server.max_connections,
            max_header_bytes: config.server.max_header_bytes,
            drain: Duration::from_millis(config.server.shutdown_grace_ms),
        }
    }
}
