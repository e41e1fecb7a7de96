//! Forwarding an allowed request to its upstream (SPEC §7): bodies streamed both ways, pooled
//! connections, timeouts, a body cap, and header hygiene — what the upstream sees of the
//! caller is exactly what keygate vouches for.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::response::{IntoResponse, Response};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::config::Config;
use crate::error::{ApiError, ErrorCode};
use crate::pipeline::Principal;

/// Headers that describe one hop, never forwarded (RFC 9110 §7.6.1), plus those a `Connection`
/// header names.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Removed from every forwarded request: credentials keygate consumed, and ways to make the
/// upstream act on another method than the one keygate judged.
const CONSUMED: &[&str] = &[
    "authorization",
    "x-session-token",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "forwarded",
    "host",
];

pub struct Proxy {
    client: Client<HttpConnector, Body>,
    response_timeout: Duration,
    max_body_bytes: u64,
    trusted: Vec<ipnet::IpNet>,
}

/// Upstream failures, as answered to the client.
fn timeout() -> ApiError {
    crate::metrics::upstream_error("timeout");
    ApiError::new(ErrorCode::UpstreamTimeout, "the upstream did not answer in time")
}

fn unavailable() -> ApiError {
    crate::metrics::upstream_error("unavailable");
    ApiError::new(ErrorCode::UpstreamUnavailable, "the upstream is unavailable")
}

fn too_large(max: u64) -> ApiError {
    ApiError::new(ErrorCode::PayloadTooLarge, format!("the body is larger than {max} bytes"))
}

impl Proxy {
    pub fn new(config: &Config) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_millis(config.proxy.connect_timeout_ms)));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            // Below the common upstream keep-alive (Node: 5 s), so a pooled connection is never
            // reused just as the upstream closes it.
            .pool_idle_timeout(Duration::from_secs(4))
            .build(connector);
        Self {
            client,
            response_timeout: Duration::from_millis(config.proxy.response_timeout_ms),
            max_body_bytes: config.proxy.max_body_bytes,
            trusted: config.trusted_networks(),
        }
    }

    /// Forwards `request` (already judged; its [`Principal`] in the extensions) to `upstream`.
    pub async fn forward(&self, upstream: &http::uri::Authority, request: Request) -> Response {
        match self.try_forward(upstream, request).await {
            Ok(response) => response,
            Err(error) => error.into_response(),
        }
    }

    async fn try_forward(&self, upstream: &http::uri::Authority, request: Request) -> Result<Response, ApiError> {
        let (mut parts, body) = request.into_parts();
        let principal = parts.extensions.remove::<Principal>().ok_or_else(ApiError::internal)?;
        let declared = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|length| length > self.max_body_bytes) {
            return Err(too_large(self.max_body_bytes));
        }
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip());
        let original_host = parts.headers.get(header::HOST).cloned();
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        parts.uri = http::Uri::builder()
            .scheme("http")
            .authority(upstream.clone())
            .path_and_query(path)
            .build()
            .map_err(|_| ApiError::internal())?;
        self.rewrite_headers(&mut parts.headers, &principal, peer, original_host);

        let limited = Limited::new(body, self.max_body_bytes as usize);
        let outgoing = http::Request::from_parts(parts, Body::new(limited));
        let answer = tokio::time::timeout(self.response_timeout, self.client.request(outgoing)).await;
        let response = match answer {
            Err(_) => return Err(timeout()),
            Ok(Err(error)) => return Err(classify(&error, self.max_body_bytes)),
            Ok(Ok(response)) => response,
        };
        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        // keygate alone decides what a browser may read.
        let upstream_cors: Vec<HeaderName> =
            parts.headers.keys().filter(|n| n.as_str().starts_with("access-control-")).cloned().collect();
        for name in upstream_cors {
            parts.headers.remove(name);
        }
        Ok(Response::from_parts(parts, Body::new(body.map_err(axum::Error::new))))
    }

    fn rewrite_headers(
        &self,
        headers: &mut HeaderMap,
        principal: &Principal,
        peer: Option<IpAddr>,
        original_host: Option<HeaderValue>,
    ) {
        let from_trusted_proxy = peer.is_some_and(|ip| self.trusted.iter().any(|net| net.contains(&ip)));
        let client_forwarded_for = headers.get("x-forwarded-for").cloned();
        let client_proto = headers.get("x-forwarded-proto").cloned();
        let client_host = headers.get("x-forwarded-host").cloned();

        strip_hop_by_hop(headers);
        for name in CONSUMED {
            headers.remove(*name);
        }
        let ours: Vec<HeaderName> = headers
            .keys()
            .filter(|n| n.as_str().starts_with("x-keygate-") || n.as_str().starts_with("x-forwarded-"))
            .cloned()
            .collect();
        for name in ours {
            headers.remove(name);
        }

        let record = &principal.record;
        let scopes = record.key.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ");
        set(headers, "x-keygate-tenant", &record.tenant.id);
        set(headers, "x-keygate-key", &record.key.id);
        set(headers, "x-keygate-scopes", &scopes);
        set(headers, "x-keygate-channel", principal.channel.as_str());

        let peer_text = peer.map(|ip| ip.to_string()).unwrap_or_default();
        let forwarded_for = match client_forwarded_for.as_ref().and_then(|v| v.to_str().ok()) {
            Some(chain) if from_trusted_proxy && !peer_text.is_empty() => format!("{chain}, {peer_text}"),
            _ => peer_text,
        };
        if !forwarded_for.is_empty() {
            set(headers, "x-forwarded-for", &forwarded_for);
        }
        let proto = client_proto.filter(|_| from_trusted_proxy).unwrap_or(HeaderValue::from_static("http"));
        headers.insert("x-forwarded-proto", proto);
        if let Some(host) = client_host.filter(|_| from_trusted_proxy).or(original_host) {
            headers.insert("x-forwarded-host", host);
        }
    }
}

fn set(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

/// Removes the hop-by-hop headers, and every header the `Connection` header names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
}

/// Connect timeouts are 504 like response timeouts; a body over the cap is 413; any other
/// failure to reach or hear the upstream is 502.
fn classify(error: &hyper_util::client::legacy::Error, max_body_bytes: u64) -> ApiError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if current.is::<LengthLimitError>() {
            crate::metrics::upstream_error("too_large");
            return too_large(max_body_bytes);
        }
        if let Some(io) = current.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            return timeout();
        }
        source = current.source();
    }
    tracing::warn!(error = %error, "upstream request failed");
    unavailable()
}
