//! Serving an [`App`] on listeners of its own (the `gateway` feature): binding them, the
//! routers of each, the edge around them, and the shutdown sequence.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use super::{App, StartError};
use crate::admin::tokens::AdminTokens;
use crate::config::Config;
use crate::edge::limits::ConnectionLimits;
use crate::edge::listener::{self, RouterSet, Routing};
use crate::feed::{FeedListener, StoreWatch};
use crate::gateway::websocket::OpenSockets;
use crate::pipeline::Pipeline;
use crate::reload::Reloader;

/// What an [`App`] holds for its listeners only.
pub(super) struct GatewayState {
    /// The admin tokens in force: a reload replaces them.
    admin_tokens: AdminTokens,
    /// The open WebSockets, judged again at every change they depend on.
    pub(super) sockets: Arc<OpenSockets>,
}

impl GatewayState {
    /// The open WebSockets hear every change `watch` applies.
    pub(super) fn new(config: &Config, pipeline: &Arc<Pipeline>, watch: &StoreWatch) -> Self {
        let sockets = OpenSockets::new(config, Arc::clone(pipeline));
        watch.set_listener(&(Arc::clone(&sockets) as Arc<dyn FeedListener>));
        Self { admin_tokens: AdminTokens::of(config), sockets }
    }
}

/// The listeners of an [`App`]: public; admin when an admin token is set; decision when
/// `server.decision_listen` is set.
pub struct Listeners {
    pub public: TcpListener,
    pub admin: Option<TcpListener>,
    pub decision: Option<TcpListener>,
}

impl Listeners {
    /// Just a public listener.
    pub fn public(public: TcpListener) -> Self {
        Self { public, admin: None, decision: None }
    }
}

impl App {
    /// Binds the configured listeners; the admin one only when an admin token is set.
    /// A failure names the address and its setting.
    pub async fn bind(&self) -> Result<Listeners, StartError> {
        let bind = |address: std::net::SocketAddr, setting: &'static str| async move {
            TcpListener::bind(address).await.map_err(|error| format!("cannot listen on {address} ({setting}): {error}"))
        };
        let public = bind(self.config.server.listen, "server.listen").await?;
        let admin = match self.config.has_admin_tokens() {
            true => Some(bind(self.config.server.admin_listen, "server.admin_listen").await?),
            false => {
                tracing::warn!("no server.admin_token or admin.tokens configured: the admin listener is not started");
                None
            }
        };
        let decision = match self.config.server.decision_listen {
            Some(address) => Some(bind(address, "server.decision_listen").await?),
            None => None,
        };
        Ok(Listeners { public, admin, decision })
    }

    /// The public routers, one per serving thread; with `decisions`, the decision listener's
    /// router; and what swaps a reloaded configuration into them.
    fn routing(&self, decisions: bool) -> Result<Routings, StartError> {
        let parts = self.public_parts();
        let threads = listener::serving_threads(&self.config);
        let routers = Arc::new(RouterSet::new(threads, parts.maker(&self.config)?));
        // On serving threads of its own, as the public listener's: a decision is a request's
        // whole pipeline, and on the work-stealing runtime its wake-ups cost more than it does.
        let decision = decisions.then(|| Arc::new(RouterSet::new(threads, || parts.decision_router(&self.config))));
        let decision_routing = decision.as_ref().map(|set| set.routing());
        let reloader = Reloader::new(
            parts,
            Arc::clone(&routers),
            decision,
            self.gateway.admin_tokens.clone(),
            self.config.clone(),
        );
        Ok(Routings { public: routers, decision: decision_routing, reloader: Arc::new(reloader) })
    }

    /// Serves until `shutdown` completes and `server.shutdown_delay_ms` has passed (draining:
    /// `/readyz` fails, connections close after their current request), then closes the
    /// listeners, finishes in-flight requests, writes pending `lastUsedAt` times, and returns.
    pub async fn serve(
        self,
        listeners: Listeners,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartError> {
        self.serve_reloading(listeners, shutdown, |_| {}).await
    }

    /// [`App::serve`], handing `reloading` what swaps a reloaded configuration in (the binary
    /// reloads on SIGHUP) once the routers are made.
    pub async fn serve_reloading(
        self,
        listeners: Listeners,
        shutdown: impl Future<Output = ()> + Send + 'static,
        reloading: impl FnOnce(Arc<Reloader>),
    ) -> Result<(), StartError> {
        let Listeners { public, admin, decision } = listeners;
        let Routings { public: routers, decision: decision_routing, reloader } = self.routing(decision.is_some())?;
        reloading(reloader);
        let background = self.start_background();
        self.shutdown.spawn_sequence(shutdown, Duration::from_millis(self.config.server.shutdown_delay_ms));
        let shutdown = self.shutdown.watch();
        let limits = ConnectionLimits::from_config(&self.config);
        let server = &self.config.server;
        let tls = |(setting, cert, key): (_, Option<&str>, Option<&str>)| -> Result<_, StartError> {
            let (Some(cert), Some(key)) = (cert, key) else { return Ok(None) };
            let certificate =
                Arc::new(crate::edge::tls::ReloadingCertificate::load(setting, cert.as_ref(), key.as_ref())?);
            certificate.spawn_watcher(self.shutdown.stopped());
            Ok(Some(certificate.acceptor()?))
        };
        let [public_certificate, admin_certificate] = server.listener_certificates();
        let public_tls = tls(public_certificate)?;
        let upgraded = Some(self.gateway.sockets.drain_handle());
        let public_server =
            listener::serve("public", public, routers.routing(), limits, public_tls, shutdown.clone(), upgraded);
        let admin_server = async {
            let Some(admin_listener) = admin.filter(|_| self.config.has_admin_tokens()) else { return Ok(()) };
            let admin_tls = tls(admin_certificate)?;
            let router = crate::admin::api::router(
                Arc::clone(&self.admin),
                self.gateway.admin_tokens.clone(),
                self.config.sessions.algorithm,
                self.pipeline.trusted_proxies().clone(),
            );
            // On the runtime that owns the store's connections: admin requests are few.
            let routing = Routing::Caller(tokio::sync::watch::Sender::new(router).subscribe());
            listener::serve("admin", admin_listener, routing, limits, admin_tls, shutdown.clone(), None).await?;
            Ok::<(), StartError>(())
        };
        let decision_server = async {
            let (Some(decision_listener), Some(routing)) = (decision, decision_routing) else { return Ok(()) };
            // Plain HTTP: the listener is for a proxy or an application beside keygate (SPEC §14).
            listener::serve("decision", decision_listener, routing, limits, None, shutdown.clone(), None).await?;
            Ok::<(), StartError>(())
        };
        let (public_result, admin_result, decision_result) = tokio::join!(public_server, admin_server, decision_server);
        public_result?;
        admin_result?;
        decision_result?;
        background.stop().await;
        self.store.close().await;
        Ok(())
    }
}

/// What [`App::serve_reloading`] serves its listeners with, and what swaps a reloaded
/// configuration in.
struct Routings {
    public: Arc<RouterSet>,
    decision: Option<Routing>,
    reloader: Arc<Reloader>,
}
