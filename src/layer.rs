//! The pipeline as a tower layer: the product's core. An axum application wraps a route with
//! [`RequireKey`], naming the route's scope and module; the gateway wraps its proxy the same
//! way, and the sessions endpoint its minting handler. So there is one pipeline.
//!
//! An allowed request reaches the inner service with the [`Principal`] in its extensions; a
//! refused one is answered here. Either way the response gets the `X-RateLimit-*` and CORS
//! headers the decision calls for. A refusal is a response, never a service error.
//!
//! The path rules ([`crate::paths`]) must run before the application routes, so that the
//! route, the pipeline and the handler see one path: [`crate::App::guard`] wraps the
//! application's router with [`normalize_paths`]. A [`RequireKey`] route that still receives a path not in normal form
//! refuses it (400), so forgetting the wrapper fails closed.

use std::borrow::Cow;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::{ConnectInfo, Request};
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use tower::{Layer, Service, ServiceExt};

use crate::error::{ApiError, Detail, ErrorCode};
use crate::metrics::RouteMetrics;
use crate::paths::normalize;
use crate::pipeline::{Decision, Pipeline, Policy};
use crate::request_log::LogNotes;

pub use crate::pipeline::Principal;

/// Runs the pipeline under one route's [`Policy`] before the inner service.
#[derive(Clone)]
pub struct RequireKey {
    pipeline: Arc<Pipeline>,
    policy: Arc<Policy>,
    metrics: Arc<RouteMetrics>,
}

impl RequireKey {
    pub fn new(pipeline: Arc<Pipeline>, policy: Policy) -> Self {
        let metrics = Arc::new(RouteMetrics::new(&policy.label));
        Self { pipeline, policy: Arc::new(policy), metrics }
    }
}

impl<S> Layer<S> for RequireKey {
    type Service = RequireKeyService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireKeyService {
            inner,
            pipeline: Arc::clone(&self.pipeline),
            policy: Arc::clone(&self.policy),
            metrics: Arc::clone(&self.metrics),
        }
    }
}

#[derive(Clone)]
pub struct RequireKeyService<S> {
    inner: S,
    pipeline: Arc<Pipeline>,
    policy: Arc<Policy>,
    metrics: Arc<RouteMetrics>,
}

impl<S> Service<Request> for RequireKeyService<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        // The clone that was driven to readiness is the one to call; keep a fresh clone.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let pipeline = Arc::clone(&self.pipeline);
        let policy = Arc::clone(&self.policy);
        let metrics = Arc::clone(&self.metrics);
        Box::pin(async move {
            if let Err(refusal) = require_normal_path(request.uri().path()) {
                return Ok(refusal.into_response());
            }
            let started = Instant::now();
            let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|info| info.0);
            let decision = pipeline.check(request.method(), request.headers(), peer, &policy).await;
            // Counted when dropped: with the response's outcome, or as the client's leaving
            // if this future is dropped before there is one.
            let mut tally = pipeline.tally(&decision);
            let mut response = match &decision.outcome {
                Ok(principal) => {
                    request.extensions_mut().insert(principal.clone());
                    let Ok(response) = inner.call(request).await;
                    response
                }
                Err(error) => error.clone().into_response(),
            };
            finish(&decision, &mut response);
            if let Some(tally) = &mut tally {
                tally.answered(&response);
            }
            metrics.record(response.extensions().get::<ErrorCode>().copied(), response.status(), started);
            Ok(response)
        })
    }
}

/// What every judged response carries: quota and CORS headers, and the log identity.
fn finish(decision: &Decision, response: &mut Response) {
    decision.decorate(response.headers_mut());
    if let Some(record) = &decision.identity {
        LogNotes::of(response.extensions_mut()).identity = Some(Arc::clone(record));
    }
}

/// Wraps an application's router so that every request path is put in normal form (or
/// refused with 400) before the router sees it.
pub fn normalize_paths(router: axum::Router) -> axum::Router {
    let normalizing = tower::service_fn(move |mut request: Request| {
        let router = router.clone();
        async move {
            if let Err(refusal) = normalize_request_path(&mut request) {
                return Ok::<_, Infallible>(refusal.into_response());
            }
            router.oneshot(request).await
        }
    });
    axum::Router::new().fallback_service(normalizing)
}

/// Puts the request's path in its normal form ([`crate::paths`]), so that routing, the
/// pipeline and the upstream all see one path; the query is kept as it is.
pub fn normalize_request_path(request: &mut Request) -> Result<(), ApiError> {
    let uri = request.uri();
    let normal = match normalize(uri.path()) {
        Err(why) => return Err(path_refused(why)),
        Ok(Cow::Borrowed(_)) => return Ok(()),
        Ok(Cow::Owned(normal)) => normal,
    };
    let target = match uri.query() {
        Some(query) => format!("{normal}?{query}"),
        None => normal,
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(target.parse().map_err(|_| path_refused("is not a valid path"))?);
    *request.uri_mut() = http::Uri::from_parts(parts).map_err(|_| path_refused("is not a valid path"))?;
    Ok(())
}

/// Behind a router the path can no longer be changed, only refused when not normal.
fn require_normal_path(path: &str) -> Result<(), ApiError> {
    match normalize(path) {
        Ok(Cow::Borrowed(_)) => Ok(()),
        Ok(Cow::Owned(_)) => Err(path_refused("must not percent-encode letters, digits or -._~")),
        Err(why) => Err(path_refused(why)),
    }
}

pub fn path_refused(why: &str) -> ApiError {
    ApiError::validation(vec![Detail::new("path", why)])
}
