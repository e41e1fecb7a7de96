//! keygate's metrics, on the `metrics` facade. With the gateway, Prometheus's recorder is
//! installed on first use and rendered at `GET /metrics` on the admin listener; the layer alone
//! installs none, and its series go to the recorder the application installed, if any (the
//! facade has one a process).

use std::sync::OnceLock;
use std::time::Instant;

use metrics::{Counter, Histogram};
#[cfg(feature = "gateway")]
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::config::OnBackendError;
use crate::error::ErrorCode;

#[cfg(feature = "gateway")]
static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

#[cfg(feature = "gateway")]
const LATENCY_BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Registers keygate's series once, with the gateway's Prometheus recorder installed first.
pub(crate) fn install() {
    #[cfg(feature = "gateway")]
    prometheus();
    // Whichever recorder is in now gets these.
    HOT.get_or_init(|| {
        describe();
        HotCounters::register()
    });
}

/// Installs Prometheus's recorder once; `None` if another recorder was installed first.
#[cfg(feature = "gateway")]
fn prometheus() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full("keygate_request_duration_seconds".to_owned()), LATENCY_BUCKETS)
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            Some(handle)
        })
        .as_ref()
}

/// The `# HELP` line of each series.
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!("keygate_requests_total", "Judged requests, by route and outcome code (OK when allowed).");
    describe_histogram!(
        "keygate_request_duration_seconds",
        Unit::Seconds,
        "Time from a request's arrival to its answer, by route, upstream included."
    );
    describe_counter!("keygate_rate_limited_total", "Requests refused with 429 RATE_LIMITED.");
    describe_counter!("keygate_sessions_minted_total", "Browser session tokens minted.");
    describe_counter!("keygate_upstream_errors_total", "Upstream failures, by kind: timeout, unavailable, too_large.");
    describe_counter!(
        "keygate_rate_limit_backend_errors_total",
        "Rate-limit backend failures, by the on_backend_error policy applied."
    );
    describe_counter!("keygate_feed_resyncs_total", "Full reloads after missing part of the store's change feed.");
    describe_counter!(
        "keygate_store_notification_reconnects_total",
        "PostgreSQL notification connections made again after dropping."
    );
    describe_counter!(
        "keygate_connections_refused_total",
        "Connections closed at once because the listener was at server.max_connections."
    );
    describe_gauge!("keygate_connections_open", "Open client connections, by listener.");
    describe_counter!(
        "keygate_unknown_keys_filtered_total",
        "Well-formed keys ruled out by the filter of known keys, without a store read."
    );
    describe_counter!("keygate_key_cache_hits_total", "Key lookups answered from the cache.");
    describe_counter!("keygate_key_cache_misses_total", "Key lookups that read the store.");
}

/// Counters bumped on most requests, registered once: a registry lookup per request costs a
/// hash and a lock that the serving threads share.
struct HotCounters {
    key_cache_hits: Counter,
    key_cache_misses: Counter,
    sessions_minted: Counter,
}

static HOT: OnceLock<HotCounters> = OnceLock::new();

impl HotCounters {
    fn register() -> Self {
        Self {
            key_cache_hits: metrics::counter!("keygate_key_cache_hits_total"),
            key_cache_misses: metrics::counter!("keygate_key_cache_misses_total"),
            sessions_minted: metrics::counter!("keygate_sessions_minted_total"),
        }
    }
}

/// Drains buffered histogram samples every few seconds until `shutdown` fires. Without it the
/// samples of a never-scraped instance would pile up in memory.
#[cfg(feature = "gateway")]
pub(crate) fn spawn_upkeep(mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let Some(handle) = prometheus() else { return };
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = tick.tick() => handle.run_upkeep(),
                _ = shutdown.changed() => break,
            }
        }
    });
}

/// The text exposition of every metric.
#[cfg(feature = "gateway")]
pub(crate) fn render() -> String {
    install();
    match prometheus() {
        Some(handle) => {
            handle.run_upkeep();
            handle.render()
        }
        None => String::new(),
    }
}

/// One route's series, each registered at its first count and kept: recording a request is
/// then a few atomic operations, with no label allocation or registry lookup on the hot path.
/// A series registered up front would be printed as 0 from the start, for every route and
/// every code, most of them pairs that cannot happen (`sessions` and `UPSTREAM_4XX`).
pub(crate) struct RouteMetrics {
    route: String,
    ok: OnceLock<Counter>,
    /// Answered 4xx or 5xx by what keygate guards (the upstream, or the application behind the
    /// layer), with no error code of keygate's: not "OK".
    guarded_client_error: OnceLock<Counter>,
    guarded_server_error: OnceLock<Counter>,
    /// By `ErrorCode as usize`, which follows `ErrorCode::ALL`.
    errors: Vec<OnceLock<Counter>>,
    duration: OnceLock<Histogram>,
}

static RATE_LIMITED: OnceLock<Counter> = OnceLock::new();
/// Counts nothing: for a code without a slot, which `ErrorCode::ALL` rules out.
static NO_COUNT: Counter = Counter::noop();

impl RouteMetrics {
    pub(crate) fn new(route: &str) -> Self {
        Self {
            route: route.to_owned(),
            ok: OnceLock::new(),
            guarded_client_error: OnceLock::new(),
            guarded_server_error: OnceLock::new(),
            errors: ErrorCode::ALL.iter().map(|_| OnceLock::new()).collect(),
            duration: OnceLock::new(),
        }
    }

    fn requests<'a>(&'a self, slot: &'a OnceLock<Counter>, code: &'static str) -> &'a Counter {
        slot.get_or_init(|| metrics::counter!("keygate_requests_total", "route" => self.route.clone(), "code" => code))
    }

    /// One request and its outcome: keygate's error code, or else by the status that what
    /// keygate guards answered (`OK`, `UPSTREAM_4XX`, `UPSTREAM_5XX`).
    pub(crate) fn record(&self, code: Option<ErrorCode>, status: http::StatusCode, started: Instant) {
        let counter = match code {
            None if status.is_client_error() => self.requests(&self.guarded_client_error, "UPSTREAM_4XX"),
            None if status.is_server_error() => self.requests(&self.guarded_server_error, "UPSTREAM_5XX"),
            None => self.requests(&self.ok, "OK"),
            Some(code) => {
                if code == ErrorCode::RateLimited {
                    RATE_LIMITED.get_or_init(|| metrics::counter!("keygate_rate_limited_total")).increment(1);
                }
                // Every code has its slot (`errors` follows `ErrorCode::ALL`).
                match self.errors.get(code as usize) {
                    Some(slot) => self.requests(slot, code.as_str()),
                    None => &NO_COUNT,
                }
            }
        };
        counter.increment(1);
        let duration = self
            .duration
            .get_or_init(|| metrics::histogram!("keygate_request_duration_seconds", "route" => self.route.clone()));
        duration.record(started.elapsed().as_secs_f64());
    }
}

pub(crate) fn session_minted() {
    if let Some(hot) = HOT.get() {
        hot.sessions_minted.increment(1);
    }
}

/// An upstream failure: `timeout`, `unavailable` or `too_large`.
#[cfg(feature = "gateway")]
pub(crate) fn upstream_error(kind: &'static str) {
    metrics::counter!("keygate_upstream_errors_total", "kind" => kind).increment(1);
}

/// The rate-limit backend failed; counted by the policy applied. Returns the policy.
pub(crate) fn limiter_failed(policy: OnBackendError) -> OnBackendError {
    let policy_name = match policy {
        OnBackendError::Allow => "allow",
        OnBackendError::Local => "local",
        OnBackendError::Deny => "deny",
    };
    metrics::counter!("keygate_rate_limit_backend_errors_total", "policy" => policy_name).increment(1);
    policy
}

/// This instance missed part of the change feed and resynced in full.
pub(crate) fn feed_resync() {
    metrics::counter!("keygate_feed_resyncs_total").increment(1);
}

/// The PostgreSQL notification connection dropped or failed, and was made again.
pub(crate) fn notification_reconnect() {
    metrics::counter!("keygate_store_notification_reconnects_total").increment(1);
}

/// A connection closed at once because its listener was at `server.max_connections`.
#[cfg(feature = "gateway")]
pub(crate) fn connection_refused(listener: &'static str) {
    metrics::counter!("keygate_connections_refused_total", "listener" => listener).increment(1);
}

/// A WebSocket handshake refused because `cap` (`instance` or `key`) had no place left.
#[cfg(feature = "gateway")]
pub(crate) fn websocket_refused(cap: &'static str) {
    metrics::counter!("keygate_websockets_refused_total", "cap" => cap).increment(1);
}

/// An open WebSocket closed by keygate because its handshake would be refused now.
#[cfg(feature = "gateway")]
pub(crate) fn websocket_closed(code: &'static str) {
    metrics::counter!("keygate_websockets_closed_total", "code" => code).increment(1);
}

/// Counts one open connection of a listener for as long as it lives.
#[cfg(feature = "gateway")]
pub(crate) struct OpenConnection(metrics::Gauge);

#[cfg(feature = "gateway")]
impl OpenConnection {
    pub(crate) fn new(listener: &'static str) -> Self {
        let gauge = metrics::gauge!("keygate_connections_open", "listener" => listener);
        gauge.increment(1.0);
        Self(gauge)
    }
}

#[cfg(feature = "gateway")]
impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// A well-formed key the filter of known keys ruled out, without a store read.
pub(crate) fn key_filtered() {
    metrics::counter!("keygate_unknown_keys_filtered_total").increment(1);
}

pub(crate) fn key_cache(hit: bool) {
    if let Some(hot) = HOT.get() {
        if hit { &hot.key_cache_hits } else { &hot.key_cache_misses }.increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_index_in_declaration_order() {
        for (index, code) in ErrorCode::ALL.iter().enumerate() {
            assert_eq!(*code as usize, index, "{}", code.as_str());
        }
    }
}
