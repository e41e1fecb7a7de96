//! One client connection, from accept to close (SPEC §9): served with hyper-util's auto
//! builder, and watched so that no connection holds a file descriptor for nothing.
//!
//! The rule is one for every protocol: a connection with no request in flight must complete a
//! request head within the head deadline (`server.header_read_timeout_ms`) of being accepted,
//! or of its last request ending. hyper's own HTTP/1 header-read timeout is armed only once
//! the auto builder has told HTTP/1 from HTTP/2, and HTTP/2 has no idle timeout at all, so a
//! socket that sent nothing, one byte or half a preface would otherwise stay open for ever.
//!
//! A request is in flight from the moment its head reaches the service until its response
//! body has been written (the body carries a guard), so a long download is never cut off.
//!
//! On shutdown ([`Shutdown`]) a connection closes without failing a request: from draining on,
//! an HTTP/1 response says `Connection: close` (closing an idle HTTP/1 connection instead would
//! race a request the client is sending on it), and HTTP/2 is sent `GOAWAY`, which tells the
//! client which streams were taken. Once stopped, an idle connection is closed; one accepted
//! that late is served its first request before it closes.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::response::IntoResponse;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use tokio::sync::{Notify, OwnedSemaphorePermit};
use tokio::time::Instant;
use tower::ServiceExt;

use crate::edge::limits::ConnectionLimits;
use crate::error::{ApiError, ErrorCode};
use crate::shutdown::Shutdown;

/// After an idle connection is asked to close gracefully (HTTP/2 `GOAWAY`), how long it gets
/// before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// What the watchdog needs to know of a connection's requests.
struct Activity {
    accepted: Instant,
    in_flight: AtomicU32,
    /// Whether any request head arrived.
    served: AtomicBool,
    /// When the last request ended, in milliseconds since `accepted`.
    idle_since_ms: AtomicU64,
    /// Whether a request came over HTTP/2.
    http2: AtomicBool,
    /// Set once shutdown begins: HTTP/1 responses then say `Connection: close`.
    closing: AtomicBool,
    /// Told of each request that arrives once `closing` is set.
    arrived_closing: Notify,
}

impl Activity {
    fn new(accepted: Instant) -> Self {
        Self {
            accepted,
            in_flight: AtomicU32::new(0),
            served: AtomicBool::new(false),
            idle_since_ms: AtomicU64::new(0),
            http2: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            arrived_closing: Notify::new(),
        }
    }

    fn begin(self: &Arc<Self>, version: http::Version) -> InFlight {
        self.served.store(true, Ordering::Relaxed);
        if version == http::Version::HTTP_2 {
            self.http2.store(true, Ordering::Relaxed);
        }
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        if self.closing.load(Ordering::Relaxed) {
            self.arrived_closing.notify_one();
        }
        InFlight(Arc::clone(self))
    }

    /// The instant from which the head deadline runs, or `None` while a request is in flight.
    fn idle_since(&self) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        Some(self.accepted + Duration::from_millis(self.idle_since_ms.load(Ordering::Acquire)))
    }
}

/// Held by a request until its response body is dropped.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let elapsed = self.0.accepted.elapsed().as_millis() as u64;
        self.0.idle_since_ms.fetch_max(elapsed, Ordering::AcqRel);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request in flight until it is written (or dropped).
pub struct GuardedBody {
    body: Body,
    _in_flight: InFlight,
}

impl hyper::body::Body for GuardedBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Request header fields answered at most, whatever the protocol: hyper's own limit for HTTP/1
/// (over it, 431), applied to HTTP/2 here (SPEC §17).
const MAX_HEADER_FIELDS: usize = 100;

/// The size of a request's head as sent in HTTP/1.1: request line, and each header as
/// `name: value` and a line break. An HTTP/2 request counts the same, so one limit means one
/// thing whatever the protocol.
fn head_bytes(request: &hyper::Request<Incoming>) -> usize {
    let target = request.uri().path_and_query().map_or(1, |p| p.as_str().len());
    let authority = request.uri().authority().map_or(0, |a| a.as_str().len());
    // `METHOD target HTTP/1.1\r\n`; over HTTP/2 the authority stands in for `Host`.
    let line = request.method().as_str().len() + " ".len() + target + authority + " HTTP/1.1\r\n".len();
    let headers: usize = request.headers().iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum();
    line + headers + 2
}

/// Serves one connection, accepted at `accepted` (the head deadline runs from then, a TLS
/// handshake included), until it ends, is closed by the head deadline, or — once shutdown
/// begins — has finished its requests.
#[allow(clippy::too_many_arguments)]
pub async fn serve_connection(
    builder: &Builder<TokioExecutor>,
    stream: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    accepted: Instant,
    peer: SocketAddr,
    permit: OwnedSemaphorePermit,
    router: tokio::sync::watch::Receiver<Router>,
    limits: ConnectionLimits,
    shutdown: Shutdown,
) {
    let Shutdown { mut draining, mut stopped } = shutdown;
    let head_deadline = limits.head_deadline;
    let activity = Arc::new(Activity::new(accepted));
    // Held until the connection ends; an upgraded connection leaves the cap (SPEC §17).
    let _permit = permit;
    let tracked = Arc::clone(&activity);
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
        let version = request.version();
        let in_flight = tracked.begin(version);
        // The router current now: a reload reaches kept-alive connections at their next request.
        let router = router.borrow().clone();
        async move {
            let response =
                if request.headers().len() > MAX_HEADER_FIELDS || head_bytes(&request) > limits.max_header_bytes {
                    // Never routed, so never forwarded.
                    ApiError::new(ErrorCode::HeadersTooLarge, "the request head is too large").into_response()
                } else {
                    let Ok(response) = router.oneshot(request).await;
                    response
                };
            let closing = in_flight.0.closing.load(Ordering::Relaxed);
            let mut response = response.map(|body| GuardedBody { body, _in_flight: in_flight });
            let upgraded = response.status() == http::StatusCode::SWITCHING_PROTOCOLS;
            if closing && version < http::Version::HTTP_2 && !upgraded {
                // hyper closes the connection once this response is written.
                response.headers_mut().insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
            }
            Ok::<_, Infallible>(response)
        }
    });
    // With upgrades: a WebSocket handshake hands its connection over to the relay.
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    tokio::pin!(connection);

    // Far enough away to never fire when there is no deadline.
    let never = Duration::from_secs(86_400 * 365);
    let watchdog = tokio::time::sleep_until(accepted + head_deadline.unwrap_or(never));
    tokio::pin!(watchdog);
    // Asked to close gracefully (by the head deadline or shutdown).
    let mut closing = false;
    // Where shutdown stands, as this connection has seen it.
    let (mut draining_seen, mut stopped_seen) = (false, false);
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(error = %error, "connection ended with an error");
                }
                return;
            }
            // At once for a connection accepted while draining or stopped.
            Ok(_) = draining.wait_for(|draining| *draining), if !draining_seen => {
                draining_seen = true;
                activity.closing.store(true, Ordering::Relaxed);
                // HTTP/1 closes after its next response; HTTP/2 is told now.
                if activity.http2.load(Ordering::Relaxed) && !closing {
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
            // Stopped comes after draining: one branch is polled at a time, as a request wakes it.
            Ok(_) = stopped.wait_for(|stopped| *stopped), if draining_seen && !stopped_seen => {
                stopped_seen = true;
                activity.closing.store(true, Ordering::Relaxed);
                // One that has not sent its first request yet is served it first (below).
                if activity.served.load(Ordering::Relaxed) && !closing {
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
            () = activity.arrived_closing.notified(), if draining_seen && !closing => {
                if stopped_seen || activity.http2.load(Ordering::Relaxed) {
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
            () = &mut watchdog, if head_deadline.is_some() => {
                let deadline = head_deadline.unwrap_or(never);
                let now = Instant::now();
                match activity.idle_since() {
                    // A request is in flight: nothing to decide until it ends.
                    None => watchdog.as_mut().reset(now + deadline),
                    Some(since) if now < since + deadline => watchdog.as_mut().reset(since + deadline),
                    // Never sent a complete head, or asked to close and still open: drop it.
                    Some(_) if closing || !activity.served.load(Ordering::Relaxed) => return,
                    Some(_) => {
                        connection.as_mut().graceful_shutdown();
                        closing = true;
                        watchdog.as_mut().reset(now + CLOSE_GRACE);
                    }
                }
            }
        }
    }
}
