//! Accepting connections for a listener (SPEC §9): at most `server.max_connections` open at
//! once, each served by [`connection::serve_connection`] (HTTP/1.1, and HTTP/2 with prior
//! knowledge) under the head deadline.
//!
//! Shutdown comes in two steps ([`crate::shutdown`]). While draining (`server.shutdown_delay_ms` from
//! SIGTERM) the listener still accepts and serves, but every connection is on its way out: an
//! HTTP/1 response says `Connection: close`, an HTTP/2 connection is sent `GOAWAY`, and
//! `/readyz` answers 503, so a load balancer moves the traffic elsewhere without a request
//! failing. Once stopped, the listener takes what the kernel has already queued, then closes
//! (a connection made after that is refused, which a client may safely retry), and in-flight
//! requests finish.
//!
//! Where connections run is the caller's choice ([`Routing`]): on the calling runtime, or on
//! serving threads, each a single-threaded runtime with its own copy of the router (and so its
//! own upstream connection pool). A request then stays on one thread from its first byte to
//! its last, upstream hop included, instead of being woken across the threads of a
//! work-stealing runtime; see docs/performance.md for the figures. Connections are dealt to the
//! threads in turn by the one accept loop, which keeps the cap and the drain in one place.
//!
//! hyper's HTTP/1 header-read timeout stays on as well: it arms a timer for every request head
//! (see docs/performance.md), and it is what cuts off a client that trickles the head of a
//! second request on a kept-alive connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio_rustls::TlsAcceptor;

use crate::config::Config;
use crate::edge::connection;
use crate::edge::limits::{AlsoDrain, ConnectionLimits};
use crate::shutdown::Shutdown;

/// At most one "over the connection cap" log line per listener in this time.
const CAP_WARNING_EVERY: Duration = Duration::from_secs(10);

/// `server.threads` serving threads; 0: one per core this process may use.
pub fn serving_threads(config: &Config) -> usize {
    match config.server.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        threads => threads,
    }
}

/// Where a listener's connections are served, and with which router. Each router is a watch:
/// every request takes the current one, so a reload ([`RouterSet::replace`]) reaches kept-alive
/// connections too, while a request already running finishes on the router it started with.
pub enum Routing {
    /// As tasks of the runtime that calls [`serve`].
    Caller(watch::Receiver<Router>),
    /// On serving threads of their own, one per router, started by [`serve`] and ended when it
    /// returns.
    Threads(Vec<watch::Receiver<Router>>),
}

/// The sending side of [`Routing::Threads`]: one router per serving thread, each with its own
/// upstream connection pool.
pub struct RouterSet {
    senders: Vec<watch::Sender<Router>>,
}

impl RouterSet {
    /// `count` routers, each made by `make`.
    pub fn new(count: usize, make: impl Fn() -> Router) -> Self {
        Self { senders: (0..count.max(1)).map(|_| watch::Sender::new(make())).collect() }
    }

    pub fn routing(&self) -> Routing {
        Routing::Threads(self.senders.iter().map(watch::Sender::subscribe).collect())
    }

    /// Gives every serving thread a new router made by `make`.
    pub fn replace(&self, make: impl Fn() -> Router) {
        for sender in &self.senders {
            // Requests running on the previous router keep it until they end.
            let _previous = sender.send_replace(make());
        }
    }
}

/// What one connection needs to be served: it holds a permit of the cap until it ends.
struct Accepted {
    /// Out of the accepting runtime's reactor, so the serving thread's own reactor drives it.
    stream: std::net::TcpStream,
    peer: SocketAddr,
    permit: OwnedSemaphorePermit,
    /// When it was accepted: the head deadline runs from here, a TLS handshake included.
    at: tokio::time::Instant,
}

/// Everything a connection is served with, whichever thread serves it.
#[derive(Clone)]
struct Serving {
    name: &'static str,
    builder: Arc<Builder<TokioExecutor>>,
    router: watch::Receiver<Router>,
    limits: ConnectionLimits,
    /// Present when the listener speaks TLS.
    tls: Option<TlsAcceptor>,
    shutdown: Shutdown,
}

impl Serving {
    fn spawn(&self, accepted: Accepted) {
        let serving = self.clone();
        tokio::spawn(async move {
            let _open = crate::metrics::OpenConnection::new(serving.name);
            let Accepted { stream, peer, permit, at } = accepted;
            let Serving { builder, router, limits, tls, shutdown, .. } = serving;
            let stream = match TcpStream::from_std(stream) {
                Ok(stream) => stream,
                Err(error) => return tracing::warn!(%error, "could not serve an accepted connection"),
            };
            let Some(acceptor) = tls else {
                return connection::serve_connection(&builder, stream, at, peer, permit, router, limits, shutdown)
                    .await;
            };
            // The handshake counts against the head deadline: one deadline from accept (SPEC §17).
            let handshake = acceptor.accept(stream);
            let handshake = match limits.head_deadline {
                Some(deadline) => tokio::time::timeout_at(at + deadline, handshake).await.ok(),
                None => Some(handshake.await),
            };
            match handshake {
                Some(Ok(stream)) => {
                    connection::serve_connection(&builder, stream, at, peer, permit, router, limits, shutdown).await;
                }
                Some(Err(error)) => tracing::debug!(%error, %peer, "TLS handshake failed"),
                None => tracing::debug!(%peer, "TLS handshake not done within the head deadline"),
            }
        });
    }
}

/// Serves on `listener` until shutdown has stopped it and its connections have ended (or the
/// drain's time is up), where and with what `routing` says. Each request carries the peer
/// address as `ConnectInfo<SocketAddr>`. `name` labels the listener in metrics and logs.
#[allow(clippy::too_many_arguments)]
pub async fn serve(
    name: &'static str,
    listener: TcpListener,
    routing: Routing,
    limits: ConnectionLimits,
    tls: Option<TlsAcceptor>,
    shutdown: Shutdown,
    also_drain: Option<AlsoDrain>,
) -> std::io::Result<()> {
    let builder = Arc::new(builder(limits));
    let serving = |router| Serving {
        name,
        builder: Arc::clone(&builder),
        router,
        limits,
        tls: tls.clone(),
        shutdown: shutdown.clone(),
    };
    let open = Arc::new(Semaphore::new(limits.max_connections as usize));
    match routing {
        Routing::Caller(router) => {
            let serving = serving(router);
            accept(name, listener, &open, limits, shutdown.stopped.clone(), |accepted| serving.spawn(accepted)).await;
            drain(&open, limits, also_drain.as_ref()).await;
        }
        Routing::Threads(routers) => {
            let mut senders = Vec::with_capacity(routers.len());
            let mut handles = Vec::with_capacity(routers.len());
            for (index, router) in routers.into_iter().enumerate() {
                let (sender, handle) = start_thread(name, index, serving(router))?;
                senders.push(sender);
                handles.push(handle);
            }
            let mut next = 0;
            accept(name, listener, &open, limits, shutdown.stopped.clone(), |accepted| {
                // In turn: keep-alive connections are long-lived, so turns even out the load.
                let _ = senders[next].send(accepted);
                next = (next + 1) % senders.len();
            })
            .await;
            drain(&open, limits, also_drain.as_ref()).await;
            // Their senders gone, the serving threads end.
            drop(senders);
            for handle in handles {
                let _ = tokio::task::spawn_blocking(move || handle.join()).await;
            }
        }
    }
    Ok(())
}

/// Accepts until `stopped` turns true, handing each connection within the cap to `dispatch`;
/// then takes the connections the kernel has already queued, and closes the listener before
/// the drain. A connection the kernel completed is so served rather than reset, and one made
/// after the close is refused at once (a load balancer tries another instance) instead of
/// waiting out the drain.
async fn accept(
    name: &'static str,
    listener: TcpListener,
    open: &Arc<Semaphore>,
    limits: ConnectionLimits,
    mut stopped: watch::Receiver<bool>,
    mut dispatch: impl FnMut(Accepted),
) {
    let stop = async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    tokio::pin!(stop);
    let mut admit = Admission { name, open, limits, last_cap_warning: None };
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
        let _ = stream.set_nodelay(true);
        match stream.into_std() {
            Ok(stream) => {
                if let Some(accepted) = admit.admit(stream, peer) {
                    dispatch(accepted);
                }
            }
            Err(error) => tracing::warn!(%error, listener = name, "could not hand over a connection"),
        }
    }
    // Out of the reactor, the listener is asked directly (it is non-blocking) until the queue
    // is empty: the reactor may not have seen the last arrivals yet.
    let Ok(listener) = listener.into_std() else { return };
    while let Ok((stream, peer)) = listener.accept() {
        let _ = stream.set_nodelay(true);
        if let (Ok(()), Some(accepted)) = (stream.set_nonblocking(true), admit.admit(stream, peer)) {
            dispatch(accepted);
        }
    }
}

/// A listener's connection cap, as connections arrive.
struct Admission<'a> {
    name: &'static str,
    open: &'a Arc<Semaphore>,
    limits: ConnectionLimits,
    last_cap_warning: Option<Instant>,
}

impl Admission<'_> {
    /// The connection with its place under the cap, or `None` (and the connection closed at
    /// once, so its descriptor is free again) when the cap is reached.
    fn admit(&mut self, stream: std::net::TcpStream, peer: SocketAddr) -> Option<Accepted> {
        if let Ok(permit) = Arc::clone(self.open).try_acquire_owned() {
            return Some(Accepted { stream, peer, permit, at: tokio::time::Instant::now() });
        }
        drop(stream);
        crate::metrics::connection_refused(self.name);
        if self.last_cap_warning.is_none_or(|at| at.elapsed() >= CAP_WARNING_EVERY) {
            self.last_cap_warning = Some(Instant::now());
            tracing::warn!(
                listener = self.name,
                max_connections = self.limits.max_connections,
                "connection cap reached: closing new connections"
            );
        }
        None
    }
}

/// Starts serving thread `index`: a single-threaded runtime that serves the connections sent
/// to it, until the sender is dropped.
fn start_thread(
    name: &'static str,
    index: usize,
    serving: Serving,
) -> std::io::Result<(mpsc::UnboundedSender<Accepted>, std::thread::JoinHandle<()>)> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (sender, mut receiver) = mpsc::unbounded_channel::<Accepted>();
    // Log where the caller logs, should it have a subscriber of its own (tests do).
    let dispatch = tracing::dispatcher::get_default(Clone::clone);
    let handle = std::thread::Builder::new().name(format!("keygate-{name}-{index}")).spawn(move || {
        let _logging = tracing::dispatcher::set_default(&dispatch);
        runtime.block_on(async move {
            while let Some(accepted) = receiver.recv().await {
                serving.spawn(accepted);
            }
        });
    })?;
    Ok((sender, handle))
}

/// Waits for the connections to finish: every one holds a permit until it ends, so having
/// them all back means drained. Upgraded connections too, by their own permits.
async fn drain(open: &Semaphore, limits: ConnectionLimits, also: Option<&AlsoDrain>) {
    let all_back = async {
        let _connections = open.acquire_many(limits.max_connections).await;
        if let Some(also) = also {
            let _upgraded = also.permits.acquire_many(also.count).await;
        }
    };
    if tokio::time::timeout(limits.drain, all_back).await.is_err() {
        tracing::warn!("in-flight requests still running after {:?}; stopping anyway", limits.drain);
    }
}

fn builder(limits: ConnectionLimits) -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http2().timer(TokioTimer::new());
    // Up to twice `max_header_bytes`, a head is read and answered 431 in the envelope by
    // `connection`, and the connection stays usable. Past that, hyper stops reading: a bare 431,
    // and the HTTP/1 connection is closed (HTTP/2: that stream only). hyper reads no less than
    // 8 KiB.
    let hard_limit = (limits.max_header_bytes * 2).max(8192);
    builder.http1().max_buf_size(hard_limit);
    builder.http2().max_header_list_size(u32::try_from(hard_limit).unwrap_or(u32::MAX));
    if let Some(deadline) = limits.head_deadline {
        builder.http1().timer(TokioTimer::new()).header_read_timeout(deadline);
        // Pings find a dead peer while requests are in flight; idle connections are closed by
        // the head deadline.
        builder.http2().keep_alive_interval(deadline).keep_alive_timeout(deadline);
    }
    builder
}
