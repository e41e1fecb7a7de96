//! Building keygate from a configuration and serving it. Listeners are bound by the caller
//! (port 0 works), so tests and the CLI start keygate the same way.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::Method;
use axum::http::header::ACCESS_CONTROL_REQUEST_METHOD;
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::admin::Admin;
use crate::admin::tokens::AdminTokens;
use crate::cache::KeyCache;
use crate::config::{Config, LimiterUrl};
use crate::cors;
use crate::edge::limits::ConnectionLimits;
use crate::edge::listener::{self, RouterSet, Routing};
use crate::feed::StoreWatch;
use crate::gateway::stack::PublicParts;
use crate::gateway::websocket::OpenSockets;
use crate::layer::RequireKey;
use crate::pipeline::{Pipeline, Policy};
use crate::preflight::PreflightIndex;
use crate::ratelimit::{MemoryLimiter, QuotaSeeds, RateLimiter, RedisLimiter};
use crate::reload::Reloader;
use crate::session::Sessions;
use crate::shutdown::ShutdownSwitch;
use crate::store::{self, Store};
use crate::time::now_millis;
use crate::usage::UsageRecorder;

pub type StartError = Box<dyn std::error::Error + Send + Sync>;

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

pub struct App {
    pub config: Config,
    pub store: Arc<dyn Store>,
    pub pipeline: Arc<Pipeline>,
    pub admin: Arc<Admin>,
    /// The admin tokens in force: a reload replaces them.
    admin_tokens: AdminTokens,
    /// The open WebSockets, judged again at every change they depend on.
    sockets: Arc<OpenSockets>,
    watch: Arc<StoreWatch>,
    limiter: MemoryLimiter,
    usage: UsageRecorder,
    /// Draining, then stopped: what the listeners, background work and upgraded connections
    /// watch.
    shutdown: ShutdownSwitch,
}

impl App {
    /// Opens the store (creating and migrating it), loads signing keys, wires the pipeline.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        crate::metrics::install();
        let store = store::open(&config).await?;
        let sessions = Arc::new(Sessions::load(&config.sessions, store.as_ref()).await?);
        let preflight = Arc::new(PreflightIndex::default());
        let cache = Arc::new(KeyCache::default());
        let watch = Arc::new(StoreWatch::new(Arc::clone(&store), cache, preflight, Arc::clone(&sessions)));
        // The filter of known keys and the preflight index, streamed from the store.
        watch.load().await?;
        // In process: the limiter itself, or the fallback of the shared one.
        // Quotas start from the store's usage counts where the limiter holds none.
        let seeds = QuotaSeeds::new(Arc::clone(&store));
        let limiter = MemoryLimiter::new(seeds.clone());
        let shared: Arc<dyn RateLimiter> = match &config.rate_limit.url {
            LimiterUrl::Memory => Arc::new(limiter.clone()),
            LimiterUrl::Redis(url) => {
                let (ca_file, timeout) = (config.rate_limit.ca_file.as_deref(), config.rate_limit.timeout());
                Arc::new(RedisLimiter::new(url, ca_file, timeout, seeds)?)
            }
        };
        let usage = UsageRecorder::default();
        let pipeline = Arc::new(Pipeline::new(
            &config,
            Arc::clone(&store),
            Arc::clone(&watch),
            Arc::clone(&shared),
            limiter.clone(),
            sessions,
            usage.clone(),
        ));
        let admin = Admin::new(Arc::clone(&store), config.keys.prefix.clone(), Some(Arc::clone(&watch)));
        let admin = Arc::new(admin.with_quotas(shared));
        let sockets = OpenSockets::new(&config, Arc::clone(&pipeline));
        watch.set_listener(&(Arc::clone(&sockets) as Arc<dyn crate::feed::FeedListener>));
        let admin_tokens = AdminTokens::of(&config);
        let shutdown = ShutdownSwitch::default();
        Ok(Self { config, store, pipeline, admin, admin_tokens, sockets, watch, limiter, usage, shutdown })
    }

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

    /// The pipeline as a tower layer for one route of an axum application.
    pub fn require(&self, policy: Policy) -> RequireKey {
        RequireKey::new(Arc::clone(&self.pipeline), policy)
    }

    /// Wraps an application's router so that CORS preflights on its own routes are answered
    /// from the key allowlists, as the gateway answers them: 204 with the CORS headers for an
    /// origin some usable key allows, else 403 `ORIGIN_NOT_ALLOWED`. keygate does not know the
    /// application's methods, so a preflight allows the method it asks for; the request itself
    /// then meets the application's routing (405) and the pipeline, as any other.
    pub fn answer_preflights(&self, router: Router) -> Router {
        let index = Arc::clone(&self.watch.preflight);
        let answering = tower::service_fn(move |request: Request| {
            let (router, index) = (router.clone(), Arc::clone(&index));
            async move {
                if cors::is_preflight(request.method(), request.headers()) {
                    let asked = request.headers().get(ACCESS_CONTROL_REQUEST_METHOD);
                    let methods: Vec<Method> =
                        asked.and_then(|m| Method::from_bytes(m.as_bytes()).ok()).into_iter().collect();
                    return Ok(cors::preflight(request.headers(), &index, &methods).await);
                }
                router.oneshot(request).await
            }
        });
        Router::new().fallback_service(answering)
    }

    /// keygate's own public routes — `POST /api/v1/sessions`, CORS preflight, health, JWKS —
    /// and the configured gateway routes. An axum application can mount it as its fallback.
    pub fn public_router(&self) -> Result<Router, StartError> {
        Ok(self.public_parts().maker(&self.config)?())
    }

    /// An axum application's router, ready to serve behind keygate: its routes (each wrapped
    /// with [`App::require`]) first, keygate's public routes as the fallback, CORS preflights
    /// answered from the key allowlists, and every path put in normal form before routing.
    /// The order matters, and this is the one place it is written: paths are normalised
    /// outermost, so the router, the pipeline and the handler all see the same path.
    pub fn guard(&self, routes: Router) -> Result<Router, StartError> {
        let routes = routes.fallback_service(self.public_router()?);
        Ok(crate::layer::normalize_paths(self.answer_preflights(routes)))
    }

    fn public_parts(&self) -> PublicParts {
        PublicParts {
            pipeline: Arc::clone(&self.pipeline),
            preflight: Arc::clone(&self.watch.preflight),
            store: Arc::clone(&self.store),
            sockets: Arc::clone(&self.sockets),
            shutdown: self.shutdown.watch(),
        }
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
        let reloader =
            Reloader::new(parts, Arc::clone(&routers), decision, self.admin_tokens.clone(), self.config.clone());
        Ok(Routings { public: routers, decision: decision_routing, reloader: Arc::new(reloader) })
    }

    /// Starts the background work: noticing store changes made elsewhere, sweeping rate-limit
    /// counters, draining metric samples, writing usage counts, folding closed hours' last uses
    /// and pruning under the retentions. Stop it to flush what is pending.
    pub fn start_background(&self) -> Background {
        let stopped = self.shutdown.stopped();
        self.watch.spawn(stopped.clone());
        self.limiter.spawn_sweeper(stopped.clone());
        crate::metrics::spawn_upkeep(stopped.clone());
        let every = Duration::from_secs(self.config.usage.flush_seconds);
        let flusher = self.usage.spawn_flusher(Arc::clone(&self.store), every, stopped.clone());
        spawn_hourly_upkeep(Arc::clone(&self.store), &self.config, stopped.clone());
        Background { stop: self.shutdown.clone(), flusher }
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
        let upgraded = Some(self.sockets.drain_handle());
        let public_server =
            listener::serve("public", public, routers.routing(), limits, public_tls, shutdown.clone(), upgraded);
        let admin_server = async {
            let Some(admin_listener) = admin.filter(|_| self.config.has_admin_tokens()) else { return Ok(()) };
            let admin_tls = tls(admin_certificate)?;
            let router = crate::admin::api::router(
                Arc::clone(&self.admin),
                self.admin_tokens.clone(),
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

/// The background work of an [`App`]; see [`App::start_background`].
pub struct Background {
    stop: ShutdownSwitch,
    flusher: tokio::task::JoinHandle<()>,
}

impl Background {
    /// Stops the background tasks after writing pending `lastUsedAt` times.
    pub async fn stop(self) {
        self.stop.stop();
        let _ = self.flusher.await;
    }
}

/// How often an instance folds the hours that closed and prunes under the retentions.
const UPKEEP_EVERY: Duration = Duration::from_secs(3600);

/// Now and every hour after, until `stopped`: folds each key's last use of the hours that have
/// closed into its row ([`Store::fold_last_uses`]), then prunes audit entries older than
/// `admin.audit_retention_days` and usage hours older than `usage.retention_days` (0: never).
/// Every instance does it; a second fold or pruning of the same hour changes nothing.
fn spawn_hourly_upkeep(store: Arc<dyn Store>, config: &Config, mut stopped: tokio::sync::watch::Receiver<bool>) {
    let days = |days: u32| (days > 0).then_some(i64::from(days) * 86_400_000);
    let (audit, usage) = (days(config.admin.audit_retention_days), days(config.usage.retention_days));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(UPKEEP_EVERY);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stopped.changed() => break,
            }
            if let Err(error) = store.fold_last_uses().await {
                tracing::warn!(%error, "keeping the last uses of closed hours failed; retrying within the hour");
            }
            if let Some(keep) = audit {
                match store.prune_audit(now_millis() - keep).await {
                    Ok(0) => {}
                    Ok(pruned) => tracing::info!(pruned, "audit entries past admin.audit_retention_days pruned"),
                    Err(error) => tracing::warn!(%error, "pruning the audit log failed; retrying within the hour"),
                }
            }
            if let Some(keep) = usage {
                match store.prune_usage(now_millis() - keep).await {
                    Ok(0) => {}
                    Ok(pruned) => tracing::info!(pruned, "usage hours past usage.retention_days pruned"),
                    Err(error) => tracing::warn!(%error, "pruning usage counts failed; retrying within the hour"),
                }
            }
        }
    });
}
