//! How the public listener's router is assembled, outermost first. A request meets:
//!
//! 1. the request log ([`crate::request_log`]): a request id, and one line when it is answered;
//! 2. routing ([`super::public`]): the path's normal form (400), CORS preflight, keygate's own
//!    paths (health, JWKS, the document), then the configured routes (404, 405, and 400 for a
//!    spelling of a stricter route); a WebSocket handshake's credentials are taken out of its
//!    protocol header here, before anything could forward them;
//! 3. the pipeline ([`crate::layer::RequireKey`]): the checks of SPEC §2, in order, with the
//!    route's policy;
//! 4. the handler: minting a session token, or the proxy ([`super::proxy`]), which relays a
//!    WebSocket ([`super::websocket`]) once the upstream agrees.
//!
//! Steps 3 and 4 are made once per route when the router is made; a reload makes new routers.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
#[cfg(feature = "gateway")]
use axum::response::IntoResponse;
use axum::response::Response;
use tower::util::BoxCloneSyncService;
use tower::{Layer, service_fn};

#[cfg(feature = "gateway")]
use super::proxy::Proxy;
use super::public::{self, Handler, PublicState, RouteTable};
use super::routes::Route;
#[cfg(feature = "gateway")]
use super::routes::Upstream;
#[cfg(feature = "gateway")]
use super::websocket::OpenSockets;
use crate::config::Config;
use crate::layer::RequireKey;
use crate::pipeline::{Pipeline, Policy};
use crate::preflight::PreflightIndex;
use crate::request_log::logged_around;
use crate::shutdown::Shutdown;
use crate::store::Store;

/// What the public listener's routers are made of, besides the configuration.
#[derive(Clone)]
pub(crate) struct PublicParts {
    pub(crate) pipeline: Arc<Pipeline>,
    pub(crate) preflight: Arc<PreflightIndex>,
    pub(crate) store: Arc<dyn Store>,
    #[cfg(feature = "gateway")]
    pub(crate) sockets: Arc<OpenSockets>,
    /// Readiness fails once draining; upgraded connections drain once stopped.
    pub(crate) shutdown: Shutdown,
}

impl PublicParts {
    /// Makes public routers for `config`: they share everything but their upstream connection
    /// pool, so that each serving thread has its own.
    #[cfg(feature = "gateway")]
    pub(crate) fn maker(&self, config: &Config) -> Result<impl Fn() -> Router + use<>, String> {
        let routes: Vec<Route> = config.routes.iter().map(Route::from_config).collect();
        let tls = crate::tls::upstream_client_config(config.proxy.ca_file.as_deref())?;
        // Open WebSockets are judged against the routes from now on.
        self.sockets.set_routes(routes.clone());
        let (parts, config) = (self.clone(), config.clone());
        Ok(move || {
            let proxy = Arc::new(Proxy::new(
                &config,
                Arc::clone(&tls),
                Arc::clone(&parts.sockets),
                parts.shutdown.stopped.clone(),
            ));
            let handlers = routes.iter().map(|route| parts.forwarding(route, &proxy)).collect();
            parts.router(routes.clone(), handlers)
        })
    }

    /// Without the gateway, keygate's own paths only: configured routes, which forward or
    /// decide, are refused at load (`crate::config`).
    #[cfg(not(feature = "gateway"))]
    pub(crate) fn maker(&self, _config: &Config) -> Result<impl Fn() -> Router + use<>, String> {
        let parts = self.clone();
        Ok(move || parts.router(Vec::new(), Vec::new()))
    }

    /// A configured route's service: the pipeline around the proxy to its upstream.
    #[cfg(feature = "gateway")]
    fn forwarding(&self, route: &Route, proxy: &Arc<Proxy>) -> Handler {
        match &route.upstream {
            Some(upstream) => {
                guarded(&self.pipeline, route.policy.clone(), forward(proxy, upstream, route.forward_meta))
            }
            // Judged for another proxy only: the gateway has nowhere to send it.
            None => BoxCloneSyncService::new(service_fn(|_: Request| async {
                Ok::<_, Infallible>(public::no_route().into_response())
            })),
        }
    }

    /// The router of `routes`, `handlers[i]` serving `routes[i]`, after keygate's own paths.
    fn router(&self, routes: Vec<Route>, handlers: Vec<Handler>) -> Router {
        let pipeline = &self.pipeline;
        let sessions = Arc::clone(pipeline.sessions());
        let mint = service_fn(move |request: Request| {
            let sessions = Arc::clone(&sessions);
            async move { Ok::<_, Infallible>(public::mint_session(&sessions, &request)) }
        });
        let state = PublicState {
            table: self.table(routes, handlers),
            store: Arc::clone(&self.store),
            create_session: guarded(pipeline, Policy::create_session(), mint),
            unmatched: crate::metrics::RouteMetrics::new("unmatched"),
            draining: self.shutdown.draining.clone(),
        };
        let trusted = pipeline.trusted_proxies().clone();
        let state = Arc::new(state);
        // Steps 1 and 2 as one service: the router only hands every request to it.
        let public = service_fn(move |request: Request| {
            let state = Arc::clone(&state);
            let answered = logged_around("public", &trusted, request, move |request| async move {
                public::dispatch(&state, request).await
            });
            async move { Ok::<_, Infallible>(answered.await) }
        });
        Router::new().fallback_service(public)
    }

    /// The decision listener's router for `config` (SPEC §14): the same routes, each judged by
    /// the same pipeline layer around an answer for the asking proxy instead of the proxy.
    #[cfg(feature = "gateway")]
    pub(crate) fn decision_router(&self, config: &Config) -> Router {
        let routes: Vec<Route> = config.routes.iter().map(Route::from_config).collect();
        let handlers = routes
            .iter()
            .map(|route| guarded(&self.pipeline, route.policy.clone(), crate::decision::allow(route.forward_meta)))
            .collect();
        let unrouted = guarded(&self.pipeline, Policy::verify(), crate::decision::allow(false));
        crate::decision::router(self.table(routes, handlers), unrouted, config.server.decision_token.clone())
    }

    fn table(&self, routes: Vec<Route>, handlers: Vec<Handler>) -> RouteTable {
        RouteTable { pipeline: Arc::clone(&self.pipeline), preflight: Arc::clone(&self.preflight), routes, handlers }
    }
}

/// Step 3 around step 4.
pub(crate) fn guarded<S>(pipeline: &Arc<Pipeline>, policy: Policy, handler: S) -> Handler
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + Sync + 'static,
    S::Future: Send,
{
    BoxCloneSyncService::new(RequireKey::new(Arc::clone(pipeline), policy).layer(handler))
}

/// The proxy to a route's upstream.
#[cfg(feature = "gateway")]
fn forward(
    proxy: &Arc<Proxy>,
    upstream: &Upstream,
    forward_meta: bool,
) -> impl tower::Service<Request, Response = Response, Error = Infallible, Future: Send> + Clone + Send + Sync + 'static
{
    let (proxy, upstream) = (Arc::clone(proxy), upstream.clone());
    service_fn(move |request: Request| {
        let (proxy, upstream) = (Arc::clone(&proxy), upstream.clone());
        async move { Ok::<_, Infallible>(proxy.forward(&upstream, forward_meta, request).await) }
    })
}
