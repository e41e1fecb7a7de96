//! The pipeline as a tower layer: the product's core. An axum application wraps a route with
//! [`RequireKey`], naming the route's scope and module; the gateway wraps its proxy the same
//! way, and the sessions endpoint its minting handler. So there is one pipeline.
//!
//! An allowed request reaches the inner service with the [`Principal`] in its extensions; a
//! refused one is answered here. Either way the response gets the `X-RateLimit-*` and CORS
//! headers the decision calls for. A refusal is a response, never a service error.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use tower::{Layer, Service};

use crate::error::ErrorCode;
use crate::http::log::LoggedIdentity;
use crate::metrics::RouteMetrics;
use crate::pipeline::{Decision, Pipeline, Policy};

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
            let started = Instant::now();
            let decision = pipeline.check(request.method(), request.headers(), &policy).await;
            let mut response = match &decision.outcome {
                Ok(principal) => {
                    request.extensions_mut().insert(principal.clone());
                    let Ok(response) = inner.call(request).await;
                    response
                }
                Err(error) => error.clone().into_response(),
            };
            finish(&decision, &mut response);
            metrics.record(response.extensions().get::<ErrorCode>().copied(), started);
            Ok(response)
        })
    }
}

/// What every judged response carries: quota and CORS headers, and the log identity.
fn finish(decision: &Decision, response: &mut Response) {
    decision.decorate(response.headers_mut());
    if let Some(record) = &decision.identity {
        response.extensions_mut().insert(LoggedIdentity(Arc::clone(record)));
    }
}
