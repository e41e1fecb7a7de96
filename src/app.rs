//! Building keygate from a configuration and serving it. Listeners are bound by the caller
//! (port 0 works), so tests and the CLI start keygate the same way.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::Method;
use axum::http::header::ACCESS_CONTROL_REQUEST_METHOD;
use tower::ServiceExt;

use crate::admin::Admin;
use crate::cache::KeyCache;
use crate::config::{Config, LimiterUrl};
use crate::cors;
use crate::feed::StoreWatch;
use crate::gateway::stack::PublicParts;
use crate::layer::RequireKey;
use crate::pipeline::{Pipeline, Policy};
use crate::preflight::PreflightIndex;
use crate::ratelimit::{MemoryLimiter, QuotaSeeds, RateLimiter};
use crate::session::Sessions;
use crate::shutdown::ShutdownSwitch;
use crate::store::{self, Store};
use crate::time::now_millis;
use crate::usage::UsageRecorder;

#[cfg(feature = "gateway")]
mod serving;
#[cfg(feature = "gateway")]
pub use serving::Listeners;

pub type StartError = Box<dyn std::error::Error + Send + Sync>;

pub struct App {
    pub config: Config,
    pub store: Arc<dyn Store>,
    pub pipeline: Arc<Pipeline>,
    pub admin: Arc<Admin>,
    /// What only the gateway's listeners use: admin tokens, open WebSockets.
    #[cfg(feature = "gateway")]
    gateway: serving::GatewayState,
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
            #[cfg(feature = "redis")]
            LimiterUrl::Redis(url) => {
                let (ca_file, timeout) = (config.rate_limit.ca_file.as_deref(), config.rate_limit.timeout());
                Arc::new(crate::ratelimit::RedisLimiter::new(url, ca_file, timeout, seeds)?)
            }
            // Refused at load (`crate::config`): never reached.
            #[cfg(not(feature = "redis"))]
            LimiterUrl::Redis(_) => return Err("rate_limit.url: built without Redis".into()),
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
        #[cfg(feature = "gateway")]
        let gateway = serving::GatewayState::new(&config, &pipeline, &watch);
        let shutdown = ShutdownSwitch::default();
        Ok(Self {
            config,
            store,
            pipeline,
            admin,
            #[cfg(feature = "gateway")]
            gateway,
            watch,
            limiter,
            usage,
            shutdown,
        })
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
            #[cfg(feature = "gateway")]
            sockets: Arc::clone(&self.gateway.sockets),
            shutdown: self.shutdown.watch(),
        }
    }

    /// Starts the background work: noticing store changes made elsewhere, sweeping rate-limit
    /// counters, draining metric samples, writing usage counts, folding closed hours' last uses
    /// and pruning under the retentions. Stop it to flush what is pending.
    pub fn start_background(&self) -> Background {
        let stopped = self.shutdown.stopped();
        self.watch.spawn(stopped.clone());
        self.limiter.spawn_sweeper(stopped.clone());
        #[cfg(feature = "gateway")]
        crate::metrics::spawn_upkeep(stopped.clone());
        let every = Duration::from_secs(self.config.usage.flush_seconds);
        let flusher = self.usage.spawn_flusher(Arc::clone(&self.store), every, stopped.clone());
        spawn_hourly_upkeep(Arc::clone(&self.store), &self.config, stopped.clone());
        Background { stop: self.shutdown.clone(), flusher }
    }
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
