//! Accepting connections for a listener (SPEC §9): at most `server.max_connections` open at
//! once, each served by [`connection::serve_connection`] (HTTP/1.1, and HTTP/2 with prior
//! knowledge) under the head deadline. On shutdown the listener closes at once; in-flight
//! requests finish.
//!
//! hyper's HTTP/1 header-read timeout stays on as well: it arms a timer for every request head
//! (see docs/performance.md), and it is what cuts off a client that trickles the head of a
//! second request on a kept-alive connection.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::config::Config;
use crate::http::connection;

/// How long in-flight requests get to finish after shutdown begins.
const DRAIN_FOR: Duration = Duration::from_secs(30);

/// At most one "over the connection cap" log line per listener in this time.
const CAP_WARNING_EVERY: Duration = Duration::from_secs(10);

/// What a listener allows its connections.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// From accept, or from the end of the last request, to a complete request head; `None`
    /// turns the deadline off.
    pub head_deadline: Option<Duration>,
    pub max_connections: u32,
}

impl ConnectionLimits {
    pub fn from_config(config: &Config) -> Self {
        Self { head_deadline: config.header_read_timeout(), max_connections: config.server.max_connections }
    }
}

/// Serves `router` on `listener` until `stopped` turns true. Each request carries the peer
/// address as `ConnectInfo<SocketAddr>`. `name` labels the listener in metrics and logs.
pub async fn serve(
    name: &'static str,
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    stopped: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    let mut stop_signal = stopped.clone();
    let stop = async move {
        let _ = stop_signal.wait_for(|stop| *stop).await;
    };
    tokio::pin!(stop);
    let builder = Arc::new(builder(limits));
    let open = Arc::new(Semaphore::new(limits.max_connections as usize));
    let mut last_cap_warning: Option<Instant> = None;
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, listener = name, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let Ok(permit) = Arc::clone(&open).try_acquire_owned() else {
            // Over the cap: close at once, so the descriptor is free again.
            drop(stream);
            crate::metrics::connection_refused(name);
            if last_cap_warning.is_none_or(|at| at.elapsed() >= CAP_WARNING_EVERY) {
                last_cap_warning = Some(Instant::now());
                tracing::warn!(
                    listener = name,
                    max_connections = limits.max_connections,
                    "connection cap reached: closing new connections"
                );
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let builder = Arc::clone(&builder);
        let router = router.clone();
        let stopped = stopped.clone();
        tokio::spawn(async move {
            let _open = crate::metrics::OpenConnection::new(name);
            connection::serve_connection(&builder, stream, peer, router, limits.head_deadline, stopped).await;
            drop(permit);
        });
    }
    drop(listener);
    // Every connection holds a permit until it ends: having them all back means drained.
    if tokio::time::timeout(DRAIN_FOR, open.acquire_many(limits.max_connections)).await.is_err() {
        tracing::warn!("in-flight requests still running after {DRAIN_FOR:?}; stopping anyway");
    }
    Ok(())
}

fn builder(limits: ConnectionLimits) -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http2().timer(TokioTimer::new());
    if let Some(deadline) = limits.head_deadline {
        builder.http1().timer(TokioTimer::new()).header_read_timeout(deadline);
        // Pings find a dead peer while requests are in flight; idle connections are closed by
        // the head deadline.
        builder.http2().keep_alive_interval(deadline).keep_alive_timeout(deadline);
    }
    builder
}
