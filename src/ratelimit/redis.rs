//! The shared limiter: one atomic Lua script per request on Redis, so that N instances never
//! admit more than `limit` requests of a key in a window. The window is computed from Redis's
//! clock (`TIME`), so instances with skewed clocks still agree; the counter and its expiry are
//! set in one step (`SET … EXAT`).

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use redis::Script;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{LimitError, Quota, RateLimiter};
use crate::model::RateLimit;

/// A backend slower than this counts as failed (`rate_limit.on_backend_error` decides).
const TIMEOUT: Duration = Duration::from_millis(250);

/// KEYS[1]: the key's counter prefix (with a `{hash tag}`, so every window of a key lives in
/// one cluster slot). ARGV: limit, window seconds. Returns the count before this request and
/// Redis's time in milliseconds. A request over the limit leaves the counter as it is.
const SCRIPT: &str = r"
local time = redis.call('TIME')
local now_s = tonumber(time[1])
local now_ms = now_s * 1000 + math.floor(tonumber(time[2]) / 1000)
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local window_end = now_s - (now_s % window) + window
local counter = KEYS[1] .. ':' .. window_end
local count = tonumber(redis.call('GET', counter) or '0')
if count < limit then
  redis.call('SET', counter, count + 1, 'EXAT', window_end + 1)
end
return {count, now_ms}
";

pub struct RedisLimiter {
    client: redis::Client,
    config: ConnectionManagerConfig,
    /// Tells this limiter's connections from another's (tests run many in one process).
    id: u64,
    script: Script,
}

thread_local! {
    /// Each thread's own connection of each limiter. A serving thread's requests then wait on
    /// a connection that the same thread drives, never on one driven by another thread (the
    /// serving model of docs/design.md); a thread's connections end with it.
    static CONNECTIONS: RefCell<HashMap<u64, ConnectionManager>> = RefCell::new(HashMap::new());
}

fn failed(error: impl std::fmt::Display) -> LimitError {
    LimitError(error.to_string())
}

impl RedisLimiter {
    /// Prepares a connection to `url` (`redis://host:port`, `rediss://` over TLS,
    /// `unix:///path`); it is made on first use, so keygate starts even while Redis is down.
    /// `ca_file`: for `rediss://`, the authorities to trust instead of the system's.
    pub fn new(url: &str, ca_file: Option<&str>) -> Result<Self, LimitError> {
        let client = match ca_file {
            None => redis::Client::open(url).map_err(failed)?,
            Some(file) => {
                let root_cert = std::fs::read(file).map_err(|e| failed(format!("rate_limit.ca_file {file}: {e}")))?;
                let certificates = redis::TlsCertificates { client_tls: None, root_cert: Some(root_cert) };
                redis::Client::build_with_tls(url, certificates).map_err(failed)?
            }
        };
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT))
            .set_number_of_retries(1);
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        let limiter = Self { client, config, id: NEXT_ID.fetch_add(1, Ordering::Relaxed), script: Script::new(SCRIPT) };
        // A bad URL is refused here, at start-up, rather than on the first request.
        limiter.connection()?;
        Ok(limiter)
    }

    /// This thread's connection, made (lazily: it connects on first use) if it has none.
    fn connection(&self) -> Result<ConnectionManager, LimitError> {
        CONNECTIONS.with_borrow_mut(|connections| {
            if let Some(connection) = connections.get(&self.id) {
                return Ok(connection.clone());
            }
            let connection =
                ConnectionManager::new_lazy_with_config(self.client.clone(), self.config.clone()).map_err(failed)?;
            connections.insert(self.id, connection.clone());
            Ok(connection)
        })
    }
}

#[async_trait]
impl RateLimiter for RedisLimiter {
    async fn hit(&self, key_id: &str, rate: RateLimit) -> Result<Quota, LimitError> {
        let mut connection = self.connection()?;
        let mut invocation = self.script.prepare_invoke();
        invocation.key(format!("keygate:rl:{{{key_id}}}")).arg(rate.limit).arg(rate.window_seconds);
        let call = invocation.invoke_async::<(u64, i64)>(&mut connection);
        let (count_before, now_ms) =
            tokio::time::timeout(TIMEOUT, call).await.map_err(|_| failed("timed out"))?.map_err(failed)?;
        // The script decided with these same numbers; `decide` restates it for the headers.
        Ok(Quota::decide(rate, count_before, now_ms).0)
    }

    async fn ping(&self) -> Result<(), LimitError> {
        let mut connection = self.connection()?;
        let command = redis::cmd("PING");
        let ping = command.query_async::<String>(&mut connection);
        tokio::time::timeout(TIMEOUT, ping).await.map_err(|_| failed("timed out"))?.map_err(failed)?;
        Ok(())
    }
}
