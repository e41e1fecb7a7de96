//! Forwarding an allowed request to its upstream (SPEC §7): bodies streamed both ways, pooled
//! connections, timeouts, a body cap, and header hygiene — what the upstream sees of the
//! caller is exactly what keygate vouches for.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use smallvec::SmallVec;
use tokio::sync::watch;

use crate::config::Config;
use crate::error::{ApiError, ErrorCode, formatted_value};
use crate::gateway::routes::Upstream;
use crate::gateway::websocket::{self, OpenSockets, RelaySettings};
use crate::pipeline::Principal;
use crate::request_log::{LogNotes, LoggedUpstream, REQUEST_ID};
use crate::trusted::TrustedProxies;

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
/// upstream act on another method, path or client than the one keygate judged.
const CONSUMED: &[&str] = &[
    "authorization",
    "x-session-token",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "forwarded",
    "host",
    "x-real-ip",
    "x-original-url",
    "x-rewrite-url",
];

/// Whether a request header may reach the upstream at all (before keygate adds its own). A
/// name with `_` never does: CGI, WSGI and Rack read `X_Keygate_Tenant` as `X-Keygate-Tenant`
/// (the class of CVE-2024-45614), and nginx drops such names by default too.
fn is_forwardable(name: &str) -> bool {
    !(name.contains('_')
        || CONSUMED.contains(&name)
        || name.starts_with("x-keygate-")
        || name.starts_with("x-forwarded-"))
}

// Header names keygate sets, parsed once.
const X_KEYGATE_TENANT: HeaderName = HeaderName::from_static("x-keygate-tenant");
const X_KEYGATE_KEY: HeaderName = HeaderName::from_static("x-keygate-key");
const X_KEYGATE_SCOPES: HeaderName = HeaderName::from_static("x-keygate-scopes");
const X_KEYGATE_CHANNEL: HeaderName = HeaderName::from_static("x-keygate-channel");
const X_KEYGATE_META: HeaderName = HeaderName::from_static("x-keygate-meta");
pub(crate) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

pub(crate) struct Proxy {
    client: Client<HttpsConnector<HttpConnector>, Body>,
    response_timeout: Duration,
    max_body_bytes: u64,
    trusted: TrustedProxies,
    /// `server.public_host`: the `X-Forwarded-Host` to send instead of the request's `Host`.
    public_host: Option<HeaderValue>,
    /// `X-Forwarded-Proto` of a request that did not come from a trusted proxy: `https` when
    /// the public listener speaks TLS (SPEC §17), else `http`.
    own_proto: HeaderValue,
    /// The open WebSockets: their caps, and what closes them.
    sockets: Arc<OpenSockets>,
    relay: RelaySettings,
    /// `keys.headers`: a key's headers are consumed, whichever carried it (SPEC §11).
    key_headers: Vec<String>,
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
    /// `tls`: for `https://` upstreams ([`crate::tls::upstream_client_config`]).
    /// `stopping` turns true when shutdown begins: upgraded connections then drain.
    pub(crate) fn new(
        config: &Config,
        tls: Arc<rustls::ClientConfig>,
        sockets: Arc<OpenSockets>,
        stopping: watch::Receiver<bool>,
    ) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_millis(config.proxy.connect_timeout_ms)));
        connector.set_nodelay(true);
        // The scheme decides: TLS for https://, plain TCP for http://.
        connector.enforce_http(false);
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(Arc::unwrap_or_clone(tls))
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let client = Client::builder(TokioExecutor::new())
            // Below the common upstream keep-alive (Node: 5 s), so a pooled connection is never
            // reused just as the upstream closes it.
            .pool_idle_timeout(Duration::from_secs(4))
            .build(connector);
        Self {
            client,
            response_timeout: Duration::from_millis(config.proxy.response_timeout_ms),
            max_body_bytes: config.proxy.max_body_bytes,
            trusted: config.trusted_proxies(),
            public_host: config.server.public_host.as_deref().and_then(|host| HeaderValue::from_str(host).ok()),
            own_proto: HeaderValue::from_static(if config.server.tls_cert_file.is_some() { "https" } else { "http" }),
            key_headers: config.keys.headers.iter().map(|h| h.as_str().to_owned()).collect(),
            sockets,
            relay: RelaySettings {
                idle: Duration::from_millis(config.proxy.websocket_idle_timeout_ms),
                max_lifetime: Duration::from_millis(config.proxy.websocket_max_lifetime_ms),
                drain: Duration::from_millis(config.server.shutdown_grace_ms),
                stopping,
            },
        }
    }

    /// Forwards `request` (already judged; its [`Principal`] in the extensions) to `upstream`.
    pub(crate) async fn forward(&self, upstream: &Upstream, forward_meta: bool, request: Request) -> Response {
        match self.try_forward(upstream, forward_meta, request).await {
            Ok(response) => response,
            Err(error) => error.into_response(),
        }
    }

    async fn try_forward(
        &self,
        upstream: &Upstream,
        forward_meta: bool,
        request: Request,
    ) -> Result<Response, ApiError> {
        let (mut parts, body) = request.into_parts();
        let principal = parts.extensions.remove::<Principal>().ok_or_else(ApiError::internal)?;
        let declared = parts.headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|length| length > self.max_body_bytes) {
            return Err(too_large(self.max_body_bytes));
        }
        // A WebSocket takes its place before the upstream hears of it (SPEC §17: 429 when full).
        let websocket = match websocket::Handshake::take(&mut parts) {
            Some(handshake) => {
                Some(handshake.admit(&self.sockets, &principal.record, parts.uri.path(), &parts.headers)?)
            }
            None => None,
        };
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip());
        // Over HTTP/2 the host comes as the `:authority`, not as a `Host` header.
        let request_host = parts
            .headers
            .get(header::HOST)
            .cloned()
            .or_else(|| parts.uri.authority().and_then(|authority| HeaderValue::from_str(authority.as_str()).ok()));
        // The request's own path and query, shared rather than copied.
        let mut target = http::uri::Parts::default();
        target.scheme = Some(upstream.scheme.clone());
        target.authority = Some(upstream.authority.clone());
        target.path_and_query =
            Some(parts.uri.path_and_query().cloned().unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")));
        parts.uri = http::Uri::from_parts(target).map_err(|_| ApiError::internal())?;
        // The upstream client speaks HTTP/1.1, whatever the client spoke to keygate; the answer
        // goes back in the client's own version, whatever the upstream spoke (an HTTP/1.0
        // upstream would otherwise take the client's keep-alive away).
        let client_version = std::mem::replace(&mut parts.version, http::Version::HTTP_11);
        self.rewrite_headers(&mut parts.headers, peer, request_host);
        if let Some(host) = &upstream.host {
            parts.headers.insert(header::HOST, host.clone());
        }
        identity_headers(&mut parts.headers, &principal, forward_meta);
        if websocket.is_some() {
            // Hop-by-hop, but this hop is to be upgraded too.
            websocket::mark_upgrade(&mut parts.headers);
        }

        let limited = Limited::new(body, self.max_body_bytes as usize);
        let outgoing = http::Request::from_parts(parts, Body::new(limited));
        let sent = std::time::Instant::now();
        let answer = tokio::time::timeout(self.response_timeout, self.client.request(outgoing)).await;
        let mut response = match answer {
            Err(_) => return Err(timeout()),
            Ok(Err(error)) => return Err(classify(&error, self.max_body_bytes)),
            Ok(Ok(response)) => response,
        };
        let upgraded = match websocket {
            Some(admitted) if response.status() == StatusCode::SWITCHING_PROTOCOLS => {
                Some((admitted, hyper::upgrade::on(&mut response)))
            }
            _ => None,
        };
        let (mut parts, body) = response.into_parts();
        parts.version = client_version;
        LogNotes::of(&mut parts.extensions).upstream =
            Some(LoggedUpstream { status: parts.status.as_u16(), elapsed: sent.elapsed() });
        // Hop-by-hop headers go; so do the upstream's CORS headers: keygate alone decides
        // what a browser may read.
        keep_end_to_end(&mut parts.headers, |name| name.starts_with("access-control-"));
        let Some((admitted, upstream)) = upgraded else {
            return Ok(Response::from_parts(parts, Body::new(body.map_err(axum::Error::new))));
        };
        admitted.accept(upstream, &mut parts.headers, &self.relay);
        Ok(Response::from_parts(parts, Body::empty()))
    }

    fn rewrite_headers(&self, headers: &mut HeaderMap, peer: Option<IpAddr>, request_host: Option<HeaderValue>) {
        let from_trusted_proxy = peer.is_some_and(|ip| self.trusted.contains(ip));
        let client_forwarded_for = headers.get(X_FORWARDED_FOR).cloned();
        let client_proto = headers.get(X_FORWARDED_PROTO).cloned();
        let client_host = headers.get(X_FORWARDED_HOST).cloned();
        // Set by keygate before the request got here; a client's `Connection` must not name it away.
        let request_id = headers.get(REQUEST_ID).cloned();

        keep_end_to_end(headers, |name| !is_forwardable(name) || self.key_headers.iter().any(|h| h == name));
        if let Some(request_id) = request_id {
            headers.insert(REQUEST_ID, request_id);
        }

        if let Some(ip) = peer {
            let chain = client_forwarded_for.as_ref().and_then(|v| v.to_str().ok()).filter(|_| from_trusted_proxy);
            let forwarded_for = match chain {
                Some(chain) => HeaderValue::from_str(&format!("{chain}, {ip}")).ok(),
                // The longest address, an IPv4-mapped IPv6 one, is 45 characters.
                None => formatted_value::<48>(format_args!("{ip}")),
            };
            if let Some(value) = forwarded_for {
                headers.insert(X_FORWARDED_FOR, value);
            }
        }
        let proto = client_proto.filter(|_| from_trusted_proxy).unwrap_or_else(|| self.own_proto.clone());
        headers.insert(X_FORWARDED_PROTO, proto);
        let own_host = self.public_host.clone().or(request_host);
        if let Some(host) = client_host.filter(|_| from_trusted_proxy).or(own_host) {
            headers.insert(X_FORWARDED_HOST, host);
        }
    }
}

/// What keygate vouches for of an allowed caller, to the upstream or in a decision (SPEC §7,
/// §14): its tenant, key, scopes and channel, and with `forward_meta` the key's `meta`.
pub(crate) fn identity_headers(headers: &mut HeaderMap, principal: &Principal, forward_meta: bool) {
    // Made once per cached key: a request clones them (a reference count each).
    let values = principal.record.identity_headers();
    let mut set = |name: HeaderName, value: &Option<HeaderValue>| {
        if let Some(value) = value {
            headers.insert(name, value.clone());
        }
    };
    set(X_KEYGATE_TENANT, &values.tenant);
    set(X_KEYGATE_KEY, &values.key);
    set(X_KEYGATE_SCOPES, &values.scopes);
    if forward_meta {
        set(X_KEYGATE_META, &values.meta);
    }
    headers.insert(X_KEYGATE_CHANNEL, HeaderValue::from_static(principal.channel.as_str()));
}

/// Keeps only end-to-end headers — dropping the hop-by-hop ones and every header the
/// `Connection` header names — and of those, the ones `also_drop` does not pick. In place: one
/// look at each name present, and a removal for each dropped one (usually two or three).
fn keep_end_to_end(headers: &mut HeaderMap, also_drop: impl Fn(&str) -> bool) {
    let named_by_connection: SmallVec<[HeaderName; 4]> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        // Parsing lower-cases the name; an empty or invalid one names nothing.
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    let dropped: SmallVec<[HeaderName; 8]> = headers
        .keys()
        .filter(|name| {
            HOP_BY_HOP.contains(&name.as_str()) || named_by_connection.contains(name) || also_drop(name.as_str())
        })
        .cloned()
        .collect();
    for name in dropped {
        headers.remove(name);
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
    // The causes say what failed: refused, reset, or the TLS handshake (an unknown issuer, …).
    tracing::warn!(error = %crate::error::causes(error), "upstream request failed");
    unavailable()
}
