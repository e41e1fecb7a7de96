//! Accepting connections for a listener: hyper-util's auto builder (HTTP/1.1, and HTTP/2 with
//! prior knowledge) with a header-read timeout, so a client that trickles its headers
//! (slowloris) is cut off. On shutdown the listener closes at once; in-flight requests finish.
//!
//! The timeout is not free: hyper arms a timer for every request head (see
//! docs/performance.md), so it can be turned off where a load balancer in front enforces one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceExt;

/// How long in-flight requests get to finish after shutdown begins.
const DRAIN_FOR: Duration = Duration::from_secs(30);

/// Serves `router` on `listener` until `stopped` turns true. Each request carries the peer
/// address as `ConnectInfo<SocketAddr>`. `header_read_timeout: None` turns the timeout off.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    header_read_timeout: Option<Duration>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    let stop = async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    tokio::pin!(stop);
    let mut builder = Builder::new(TokioExecutor::new());
    if let Some(timeout) = header_read_timeout {
        builder.http1().timer(TokioTimer::new()).header_read_timeout(timeout);
    }
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let _ = stream.set_nodelay(true);
        let service = router.clone().map_request(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
            request
        });
        let builder = Arc::clone(&builder);
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let connection = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
            if let Err(error) = watcher.watch(connection).await {
                tracing::debug!(error = %error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_FOR, graceful.shutdown()).await.is_err() {
        tracing::warn!("in-flight requests still running after {DRAIN_FOR:?}; stopping anyway");
    }
    Ok(())
}
